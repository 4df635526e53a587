import { setTimeout as sleep } from 'node:timers/promises';
import type avro from 'avsc';
import {
  SchemaRegistryClient,
  Compatibility,
} from '@confluentinc/schemaregistry/dist/schemaregistry-client.js';
import type { TopicName, TopicValues } from '../../core/model/topics.js';
import { LightmemError, UnavailableError, errorMessage } from '../../core/errors.js';
import { TopicTypes } from '../avro/topic-types.js';
import { registryClientConfig, type RegistrySecurity } from './kafka-security.js';
import { withoutUrlCredentials } from '../../core/config.js';

/** Confluent wire format: magic byte 0, the schema id as a big-endian int32, then the Avro binary. */
const MAGIC = 0;
const HEADER_BYTES = 5;

export interface RegistryOptions {
  /** Base URL of a Confluent-compatible registry API (for Apicurio: …/apis/ccompat/v7). */
  readonly url: string;
  /** Subject of a topic's values (TopicNameStrategy: `<kafka topic>-value`). */
  readonly subjectOf: (topic: TopicName) => string;
  /** Basic authentication and TLS (`registry.username`, `registry.password`, `registry.tls`). */
  readonly security?: RegistrySecurity | undefined;
}

/** A registry client; CA files are read here (an unreadable one is a config error naming its setting). */
export function registryClient(url: string, security?: RegistrySecurity): SchemaRegistryClient {
  return new SchemaRegistryClient(registryClientConfig(url, security));
}

/** HTTP status of a registry error (the client throws RestError with `status`). */
function statusOf(error: unknown): number | undefined {
  if (typeof error === 'object' && error !== null && 'status' in error && typeof error.status === 'number')
    return error.status;
  return undefined;
}

function registryFailure(what: string, error: unknown): LightmemError {
  const status = statusOf(error);
  const reason = withoutUrlCredentials(errorMessage(error));
  if (status === undefined || status >= 500)
    return new UnavailableError(`schema registry: ${what}: ${reason}`, error);
  if (status === 401 || status === 403) {
    // Retrying cannot help: the credentials (or their rights) are wrong.
    return new LightmemError(
      'config_invalid',
      `schema registry: ${what}: ${status === 401 ? 'credentials refused' : 'not allowed'} (HTTP ${status}; registry.username / registry.password): ${reason}`,
      { field: 'registry', cause: error },
    );
  }
  return new LightmemError('config_invalid', `schema registry: ${what}: ${reason}`, {
    cause: error,
  });
}

/**
 * Avro values in the Confluent wire format, against a schema registry. Producers look their schema up
 * and never register it (registration is the admin step, `registerSchemas`): a process whose schema the
 * registry does not know fails at start-up, not by inventing a version. Decoding resolves the writer
 * schema (fetched by id, cached) against the current reader schema, so older compatible records read.
 */
export class RegistryAvroCodec {
  private readonly types = new TopicTypes();
  private readonly writerIds = new Map<TopicName, number>();
  private readonly resolvers = new Map<string, avro.Resolver | null>();

  private constructor(
    private readonly client: SchemaRegistryClient,
    private readonly options: RegistryOptions,
  ) {}

  /** Looks up the id of every topic's current schema; fails when one is not registered. */
  static async open(options: RegistryOptions, topics: readonly TopicName[]): Promise<RegistryAvroCodec> {
    const codec = new RegistryAvroCodec(registryClient(options.url, options.security), options);
    for (const topic of topics) {
      const subject = options.subjectOf(topic);
      let id: number;
      try {
        id = await codec.client.getId(
          subject,
          { schemaType: 'AVRO', schema: codec.types.schemaJson(topic) },
          false,
        );
      } catch (error) {
        if (statusOf(error) === 404) {
          throw new LightmemError(
            'config_invalid',
            `schema registry: the current ${topic} schema is not registered under ${subject}; run \`lightmem admin init\` (producers never register schemas)`,
            { cause: error },
          );
        }
        throw registryFailure(`looking up ${subject}`, error);
      }
      codec.writerIds.set(topic, id);
      codec.resolvers.set(`${topic}:${id}`, null);
    }
    return codec;
  }

  encode<T extends TopicName>(topic: T, value: TopicValues[T]): Buffer {
    const id = this.writerIds.get(topic);
    if (id === undefined) throw new LightmemError('internal', `no registered schema id for ${topic}`);
    const body = this.types.encode(topic, value);
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt8(MAGIC, 0);
    header.writeInt32BE(id, 1);
    return Buffer.concat([header, body]);
  }

  /** Decodes a wire-format value; a value that is not in the wire format is invalid input (dead-lettered). */
  async decode<T extends TopicName>(topic: T, buffer: Buffer): Promise<TopicValues[T]> {
    if (buffer.length < HEADER_BYTES || buffer.readUInt8(0) !== MAGIC) {
      throw new LightmemError(
        'invalid_input',
        `a ${topic} value is not in the Confluent wire format (magic byte 0 + schema id)`,
      );
    }
    const id = buffer.readInt32BE(1);
    const resolver = await this.resolverFor(topic, id);
    try {
      return this.types.decode(topic, buffer.subarray(HEADER_BYTES), resolver ?? undefined);
    } catch (error) {
      throw new LightmemError(
        'invalid_input',
        `a ${topic} value does not decode with schema id ${id}: ${errorMessage(error)}`,
        {
          cause: error,
        },
      );
    }
  }

  private async resolverFor(topic: TopicName, id: number): Promise<avro.Resolver | null> {
    const key = `${topic}:${id}`;
    const cached = this.resolvers.get(key);
    if (cached !== undefined) return cached;
    let writer: string;
    try {
      writer = (await this.client.getBySubjectAndId(this.options.subjectOf(topic), id)).schema;
    } catch (error) {
      if (statusOf(error) === 404) {
        throw new LightmemError(
          'invalid_input',
          `a ${topic} value names schema id ${id}, which the registry does not know`,
          { cause: error },
        );
      }
      throw registryFailure(`fetching schema ${id}`, error);
    }
    let resolver: avro.Resolver;
    try {
      resolver = this.types.resolverFor(topic, writer);
    } catch (error) {
      throw new LightmemError(
        'invalid_input',
        `schema id ${id} of a ${topic} value cannot be read as the current schema: ${errorMessage(error)}`,
        {
          cause: error,
        },
      );
    }
    this.resolvers.set(key, resolver);
    return resolver;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

export interface RegistrationResult {
  readonly subject: string;
  readonly id: number;
  readonly version: number;
}

/**
 * The admin step: sets BACKWARD_TRANSITIVE compatibility on each topic's subject and registers the current
 * schema (a no-op when it is already the latest). An incompatible schema is refused by the registry and
 * reported with its reason.
 */
export async function registerSchemas(
  options: RegistryOptions,
  topics: readonly TopicName[],
  schemaJson: (topic: TopicName) => string = (topic) => new TopicTypes().schemaJson(topic),
): Promise<RegistrationResult[]> {
  const client = registryClient(options.url, options.security);
  try {
    const results: RegistrationResult[] = [];
    for (const topic of topics) {
      const subject = options.subjectOf(topic);
      const schema = { schemaType: 'AVRO', schema: schemaJson(topic) };
      // Processes opening a new pipeline version register at once: Apicurio refuses the second creation of
      // a subject's rule ("A rule named 'COMPATIBILITY' already exists"); setting it again updates it.
      for (let attempt = 1; ; attempt++) {
        try {
          await client.updateConfig(subject, { compatibility: Compatibility.BACKWARD_TRANSITIVE });
          break;
        } catch (error) {
          if (attempt >= 3) throw registryFailure(`setting BACKWARD_TRANSITIVE on ${subject}`, error);
          await sleep(50 * attempt + Math.floor(Math.random() * 50));
        }
      }
      let metadata;
      try {
        metadata = await client.registerFullResponse(subject, schema, false);
      } catch (error) {
        if (statusOf(error) === 409) {
          throw new LightmemError(
            'config_invalid',
            `schema registry refused the ${topic} schema as incompatible with the registered versions of ${subject} (BACKWARD_TRANSITIVE): ${errorMessage(error)}`,
            { cause: error },
          );
        }
        throw registryFailure(`registering ${subject}`, error);
      }
      const version = metadata.version ?? (await client.getVersion(subject, schema, false, false));
      const id = metadata.id ?? (await client.getId(subject, schema, false));
      results.push({ subject, id, version });
    }
    return results;
  } finally {
    await client.close();
  }
}
