import avro from 'avsc';
import { avroSchemas, type AvroSchemaName } from '../../core/model/generated.js';
import { topicSchemas, type TopicName, type TopicValues } from '../../core/model/topics.js';
import { LightmemError } from '../../core/errors.js';

/** The current Avro type of each topic's values, from the schemas in `schemas/`. */
export class TopicTypes {
  private readonly types = new Map<TopicName, avro.Type>();

  constructor() {
    for (const [topic, schemaName] of Object.entries(topicSchemas) as [TopicName, AvroSchemaName][]) {
      this.types.set(topic, avro.Type.forSchema(avroSchemas[schemaName] as avro.Schema));
    }
  }

  typeOf(topic: TopicName): avro.Type {
    const type = this.types.get(topic);
    if (type === undefined) throw new LightmemError('internal', `no schema for topic ${topic}`);
    return type;
  }

  /** The schema JSON of a topic's values, as registered and as recorded beside records. */
  schemaJson(topic: TopicName): string {
    return JSON.stringify(this.typeOf(topic).schema());
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
