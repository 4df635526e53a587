import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import avro from 'avsc';
import {
  RegistryAvroCodec,
  registerSchemas,
  registryClient,
} from '../../services/adapters/kafka/registry-codec.js';
import { valueSubject } from '../../services/adapters/kafka/kafka-topics.js';
import { avroSchemas } from '../../services/core/model/generated.js';
import { Topics, type TopicName } from '../../services/core/model/topics.js';
import { LightmemError } from '../../services/core/errors.js';
import { makeTurn } from '../support/event-fixtures.js';
import { freshLayout, servers } from './support/servers.js';

/**
 * Schema evolution against the real registry (Apicurio, Confluent API): BACKWARD_TRANSITIVE is enforced at
 * registration, an old record decodes with the current schema, producers never register.
 */
type RecordSchema = { fields: { name: string; type: unknown; default?: unknown }[] } & Record<
  string,
  unknown
>;
const current = avroSchemas.ConversationEvent as RecordSchema;
/** ConversationEvent as lightmem 0.0 wrote it: no zoneOffset, no metadata (both added later with defaults). */
const v0: RecordSchema = {
  ...current,
  fields: current.fields.filter((f) => f.name !== 'zoneOffset' && f.name !== 'metadata'),
};

describe('schema registry (real Apicurio, Confluent API)', () => {
  it('an old record still decodes after a compatible change; an incompatible change is refused at registration', async () => {
    const layout = freshLayout('schemas');
    const subjectOf = (topic: TopicName) => valueSubject(layout, topic);
    const registry = { url: servers.registryUrl, subjectOf };

    // Version 1: the old schema, and a record written with it in the Confluent wire format.
    const [old] = await registerSchemas(registry, [Topics.raw], () => JSON.stringify(v0));
    assert.ok(old !== undefined);
    assert.equal(old.version, 1);
    const oldType = avro.Type.forSchema(v0 as avro.Schema);
    const oldValue: Record<string, unknown> = {
      ...makeTurn(7, { text: 'written before zoneOffset existed' }),
    };
    delete oldValue['zoneOffset'];
    delete oldValue['metadata'];
    const header = Buffer.alloc(5);
    header.writeInt32BE(old.id, 1);
    const oldRecord = Buffer.concat([header, oldType.toBuffer(oldValue)]);

    // Version 2: the current schema (new fields with defaults) is compatible and accepted.
    const [now] = await registerSchemas(registry, [Topics.raw]);
    assert.equal(now?.version, 2);
    const client = registryClient(servers.registryUrl);
    try {
      const config = await client.getConfig(subjectOf(Topics.raw));
      assert.equal(config.compatibilityLevel, 'BACKWARD_TRANSITIVE');
    } finally {
      await client.close();
    }

    // A reader on the current schema decodes the old record, with the defaults of the new fields.
    const codec = await RegistryAvroCodec.open(registry, [Topics.raw]);
    try {
      const decoded = await codec.decode(Topics.raw, oldRecord);
      assert.equal(decoded.text, 'written before zoneOffset existed');
      assert.equal(decoded.zoneOffset, '+00:00');
      assert.deepEqual({ ...decoded.metadata }, {});
      // And what it writes now carries the new schema's id and round-trips.
      const fresh = makeTurn(8, { zoneOffset: '+02:00' });
      const encoded = codec.encode(Topics.raw, fresh);
      assert.equal(encoded.readInt32BE(1), now?.id);
      assert.equal((await codec.decode(Topics.raw, encoded)).zoneOffset, '+02:00');
    } finally {
      await codec.close();
    }

    // Version 3 attempt: a new field without a default cannot read the old records: refused.
    const incompatible = { ...current, fields: [...current.fields, { name: 'priority', type: 'int' }] };
    await assert.rejects(
      () => registerSchemas(registry, [Topics.raw], () => JSON.stringify(incompatible)),
      (error: unknown) => {
        assert.ok(error instanceof LightmemError, String(error));
        assert.equal(error.code, 'config_invalid');
        assert.match(error.message, /incompatible/);
        return true;
      },
    );
    // A type change of an existing field is refused too.
    const retyped = {
      ...current,
      fields: current.fields.map((f) => (f.name === 'seq' ? { ...f, type: 'string' } : f)),
    };
    await assert.rejects(
      () => registerSchemas(registry, [Topics.raw], () => JSON.stringify(retyped)),
      /incompatible/,
    );
  });

  it('a producer never registers: a schema the registry does not know stops it at start-up', async () => {
    const layout = freshLayout('no-register');
    const registry = {
      url: servers.registryUrl,
      subjectOf: (topic: TopicName) => valueSubject(layout, topic),
    };
    await assert.rejects(
      () => RegistryAvroCodec.open(registry, [Topics.raw]),
      (error: unknown) =>
        error instanceof LightmemError && error.code === 'config_invalid' && /admin init/.test(error.message),
    );
    const client = registryClient(servers.registryUrl);
    try {
      const subjects = await client.getAllSubjects();
      assert.ok(!subjects.includes(valueSubject(layout, Topics.raw)), 'nothing was registered');
    } finally {
      await client.close();
    }
  });

  it('a value that is not in the wire format, or names an unknown schema id, is invalid input (dead-lettered by stages)', async () => {
    const layout = freshLayout('wire');
    const registry = {
      url: servers.registryUrl,
      subjectOf: (topic: TopicName) => valueSubject(layout, topic),
    };
    await registerSchemas(registry, [Topics.raw]);
    const codec = await RegistryAvroCodec.open(registry, [Topics.raw]);
    try {
      await assert.rejects(() => codec.decode(Topics.raw, Buffer.from('{"json":true}')), /wire format/);
      const unknownId = Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0x00]), Buffer.from([1, 2, 3])]);
      await assert.rejects(
        () => codec.decode(Topics.raw, unknownId),
        (error: unknown) => error instanceof LightmemError && error.code === 'invalid_input',
      );
      const truncated = codec.encode(Topics.raw, makeTurn(1)).subarray(0, 12);
      await assert.rejects(() => codec.decode(Topics.raw, truncated), /does not decode/);
    } finally {
      await codec.close();
    }
  });
});
