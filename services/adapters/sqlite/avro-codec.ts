import avro from 'avsc';
import { avroSchemas, type AvroSchemaName } from '../../core/model/generated.js';
import { topicSchemas, type TopicName, type TopicValues } from '../../core/model/topics.js';
import { LightmemError } from '../../core/errors.js';

/**
 * Avro binary encoding of topic values, with the writer schema's fingerprint stored beside each record.
 * Decoding resolves an old writer schema against the current reader schema, so records written before a
 * compatible schema change still read (the embedded counterpart of a schema registry).
 */
export class AvroCodec {
  private readonly types = new Map<TopicName, avro.Type>();
  private readonly fingerprints = new Map<TopicName, string>();
  private readonly resolvers = new Map<string, avro.Resolver>();

  constructor(private readonly lookupWriterSchema: (fingerprint: string) => string | undefined) {
    for (const [topic, schemaName] of Object.entries(topicSchemas) as [TopicName, AvroSchemaName][]) {
      const type = avro.Type.forSchema(avroSchemas[schemaName] as avro.Schema);
      this.types.set(topic, type);
      this.fingerprints.set(topic, type.fingerprint('sha256').toString('hex'));
    }
  }

  /** The current (writer) schemas: fingerprint → schema JSON, to be recorded once. */
  writerSchemas(): { fingerprint: string; schema: string }[] {
    return [...this.types.entries()].map(([topic, type]) => ({
      fingerprint: this.fingerprintOf(topic),
      schema: JSON.stringify(type.schema()),
    }));
  }

  fingerprintOf(topic: TopicName): string {
    const fingerprint = this.fingerprints.get(topic);
    if (fingerprint === undefined) throw new LightmemError('internal', `no schema for topic ${topic}`);
    return fingerprint;
  }

  encode<T extends TopicName>(topic: T, value: TopicValues[T]): Buffer {
    const type = this.typeOf(topic);
    const problems: string[] = [];
    if (!type.isValid(value, { errorHook: (path) => problems.push(path.join('.')) })) {
      throw new LightmemError(
        'invalid_input',
        `record does not match the ${topic} schema at ${problems.join(', ')}`,
        {
          field: problems[0],
        },
      );
    }
    return type.toBuffer(value);
  }

  decode<T extends TopicName>(topic: T, buffer: Buffer, fingerprint: string): TopicValues[T] {
    const type = this.typeOf(topic);
    if (fingerprint === this.fingerprintOf(topic)) return type.fromBuffer(buffer) as TopicValues[T];
    const resolverKey = `${topic}:${fingerprint}`;
    let resolver = this.resolvers.get(resolverKey);
    if (resolver === undefined) {
      const writerSchema = this.lookupWriterSchema(fingerprint);
      if (writerSchema === undefined) {
        throw new LightmemError('storage_corrupt', `unknown writer schema ${fingerprint} in topic ${topic}`);
      }
      resolver = type.createResolver(avro.Type.forSchema(JSON.parse(writerSchema) as avro.Schema));
      this.resolvers.set(resolverKey, resolver);
    }
    return type.fromBuffer(buffer, resolver) as TopicValues[T];
  }

  private typeOf(topic: TopicName): avro.Type {
    const type = this.types.get(topic);
    if (type === undefined) throw new LightmemError('internal', `no schema for topic ${topic}`);
    return type;
  }
}
