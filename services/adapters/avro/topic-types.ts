import avro from 'avsc';
import { avroSchemas, type AvroSchemaName } from '../../core/model/generated.js';
import { topicSchemas, type TopicName, type TopicValues } from '../../core/model/topics.js';
import { LightmemError } from '../../core/errors.js';

/** The current Avro type of each topic's values, from the schemas in `schemas/`. */
export class TopicTypes {
  private readonly types = new Map<TopicName, avro.Type>();
  private readonly sources = new Map<TopicName, string>();

  constructor() {
    for (const [topic, schemaName] of Object.entries(topicSchemas) as [TopicName, AvroSchemaName][]) {
      this.types.set(topic, avro.Type.forSchema(avroSchemas[schemaName] as avro.Schema));
      this.sources.set(topic, JSON.stringify(avroSchemas[schemaName]));
    }
  }

  typeOf(topic: TopicName): avro.Type {
    const type = this.types.get(topic);
    if (type === undefined) throw new LightmemError('internal', `no schema for topic ${topic}`);
    return type;
  }

  /**
   * The schema JSON of a topic's values as written in `schemas/`, with defaults and docs (avsc's
   * `type.schema()` drops defaults, and a registry judges compatibility by them).
   */
  schemaJson(topic: TopicName): string {
    const source = this.sources.get(topic);
    if (source === undefined) throw new LightmemError('internal', `no schema for topic ${topic}`);
    return source;
  }

  /** Avro binary of a value; a value that does not match the schema is refused naming the field. */
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

  /** Decodes bytes written with `writer` (an older compatible schema, or the current one when absent). */
  decode<T extends TopicName>(topic: T, buffer: Buffer, resolver?: avro.Resolver): TopicValues[T] {
    return this.typeOf(topic).fromBuffer(buffer, resolver) as TopicValues[T];
  }

  resolverFor(topic: TopicName, writerSchemaJson: string): avro.Resolver {
    return this.typeOf(topic).createResolver(
      avro.Type.forSchema(JSON.parse(writerSchemaJson) as avro.Schema),
    );
  }
}
