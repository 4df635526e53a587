import type avro from 'avsc';
import type { TopicName, TopicValues } from '../../core/model/topics.js';
import { topicSchemas } from '../../core/model/topics.js';
import { LightmemError } from '../../core/errors.js';
import { TopicTypes } from '../avro/topic-types.js';

/**
 * Avro binary encoding of topic values, with the writer schema's fingerprint stored beside each record.
 * Decoding resolves an old writer schema against the current reader schema, so records written before a
 * compatible schema change still read (the embedded counterpart of a schema registry).
 */
export class AvroCodec {
  private readonly types = new TopicTypes();
  private readonly fingerprints = new Map<TopicName, string>();
  private readonly resolvers = new Map<string, avro.Resolver>();

  constructor(private readonly lookupWriterSchema: (fingerprint: string) => string | undefined) {
    for (const topic of Object.keys(topicSchemas) as TopicName[]) {
      this.fingerprints.set(topic, this.types.typeOf(topic).fingerprint('sha256').toString('hex'));
    }
  }

  /** The current (writer) schemas: fingerprint → schema JSON, to be recorded once. */
  writerSchemas(): { fingerprint: string; schema: string }[] {
    return [...this.fingerprints.keys()].map((topic) => ({
      fingerprint: this.fingerprintOf(topic),
      schema: this.types.schemaJson(topic),
    }));
  }

  fingerprintOf(topic: TopicName): string {
    const fingerprint = this.fingerprints.get(topic);
    if (fingerprint === undefined) throw new LightmemError('internal', `no schema for topic ${topic}`);
    return fingerprint;
  }

  encode<T extends TopicName>(topic: T, value: TopicValues[T]): Buffer {
    return this.types.encode(topic, value);
  }

  decode<T extends TopicName>(topic: T, buffer: Buffer, fingerprint: string): TopicValues[T] {
    if (fingerprint === this.fingerprintOf(topic)) return this.types.decode(topic, buffer);
    const resolverKey = `${topic}:${fingerprint}`;
    let resolver = this.resolvers.get(resolverKey);
    if (resolver === undefined) {
      const writerSchema = this.lookupWriterSchema(fingerprint);
      if (writerSchema === undefined) {
        throw new LightmemError('storage_corrupt', `unknown writer schema ${fingerprint} in topic ${topic}`);
      }
      resolver = this.types.resolverFor(topic, writerSchema);
      this.resolvers.set(resolverKey, resolver);
    }
    return this.types.decode(topic, buffer, resolver);
  }
}
