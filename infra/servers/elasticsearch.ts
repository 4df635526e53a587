import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { infraPorts } from '../endpoints.js';
import { InfraError } from '../lib/infra-error.js';
import { downloadMaven } from '../lib/download.js';
import { unpackOnce } from '../lib/archive.js';
import { ensureDirs } from '../lib/layout.js';
import { findJava } from '../lib/java.js';
import { runChecked } from '../lib/processes.js';
import { probe, type ServerContext, type ServerSpec } from '../lib/server-spec.js';

/** Keep the @elastic/elasticsearch client's major version equal to this one (package.json). */
export const elasticsearchVersion = '8.19.21';
const artifact = {
  groupId: 'org.elasticsearch.distribution.integ-test-zip',
  artifactId: 'elasticsearch',
  version: elasticsearchVersion,
  extension: 'zip',
} as const;

/** Elasticsearch refuses to run as root: from a root shell it runs as this unprivileged user. */
const runAs = 'nobody';

function home(context: ServerContext): string {
  return join(
    context.layout.installs,
    `elasticsearch-${elasticsearchVersion}`,
    `elasticsearch-${elasticsearchVersion}`,
  );
}

/**
 * Elasticsearch from Maven Central's integ-test zip (the core server without the bundled JDK, scripting,
 * ingest or extra analyzers; BM25, dense_vector kNN, aliases, templates and bulk are in). Single node,
 * loopback, security off, 512 MB heap, configuration and data outside the unpacked folder.
 */
export const elasticsearchServer: ServerSpec = {
  name: 'elasticsearch',
  summary: `Elasticsearch ${elasticsearchVersion} (integ-test zip, single node, security off)`,
  ports: [infraPorts.elasticsearch, infraPorts.elasticsearchTransport],
  endpoint: `http://127.0.0.1:${infraPorts.elasticsearch}`,
  dependsOn: [],
  startTimeoutMs: 120_000,
  stopGraceMs: 30_000,

  async install(context) {
    const archive = await downloadMaven(artifact, context.layout.downloads);
    const target = join(context.layout.installs, `elasticsearch-${elasticsearchVersion}`);
    const fresh = !existsSync(join(target, '.complete'));
    unpackOnce(archive, target, `Elasticsearch ${elasticsearchVersion}`);
    // The zip ships 0660 / 0750 files; the unprivileged user must read them.
    if (fresh) runChecked('chmod', ['-R', 'a+rX', target], 'making Elasticsearch readable');
  },

  async prepare(context) {
    const { paths } = context;
    const java = findJava(17);
    const es = home(context);
    const tmp = join(paths.data, '..', 'tmp');
    ensureDirs(tmp, join(paths.data, 'es'));
    writeFileSync(
      join(paths.config, 'elasticsearch.yml'),
      [
        '# Written by infra/servers/elasticsearch.ts',
        'cluster.name: lightmem-dev',
        'node.name: lightmem-dev-1',
        `path.data: ${join(paths.data, 'es')}`,
        `path.logs: ${paths.logs}`,
        'network.host: 127.0.0.1',
        `http.port: ${infraPorts.elasticsearch}`,
        `transport.port: ${infraPorts.elasticsearchTransport}`,
        'discovery.type: single-node',
        'xpack.security.enabled: false',
        'action.destructive_requires_name: true',
        '',
      ].join('\n'),
    );
    for (const file of ['jvm.options', 'log4j2.properties'])
      copyFileSync(join(es, 'config', file), join(paths.config, file));
    const env = {
      ES_JAVA_HOME: java.home,
      ES_PATH_CONF: paths.config,
      ES_TMPDIR: tmp,
      ES_JAVA_OPTS: '-Xms512m -Xmx512m -XX:-AlwaysPreTouch',
    };
    if (!existsSync(join(paths.config, 'elasticsearch.keystore'))) {
      runChecked(
        join(es, 'bin', 'elasticsearch-keystore'),
        ['create'],
        'creating the Elasticsearch keystore',
        { env, cwd: paths.config },
      );
    }
    const root = process.getuid?.() === 0;
    if (!root) return { command: join(es, 'bin', 'elasticsearch'), args: [], env };
    runChecked('chmod', ['-R', 'a+rX', paths.config], 'making the Elasticsearch config readable');
    runChecked(
      'chown',
      ['-R', `${runAs}:`, paths.data, paths.logs, tmp],
      `handing the Elasticsearch folders to ${runAs}`,
    );
    const setpriv = spawnSync('setpriv', ['--version']);
    if (setpriv.status !== 0)
      throw new InfraError(
        'running as root: Elasticsearch must run as another user, and `setpriv` (util-linux) is missing',
      );
    return {
      command: 'setpriv',
      args: [
        `--reuid=${runAs}`,
        '--regid=nogroup',
        '--init-groups',
        'env',
        `HOME=${tmp}`,
        join(es, 'bin', 'elasticsearch'),
      ],
      env,
    };
  },

  healthy: () =>
    probe(async (signal) => {
      const response = await fetch(
        `http://127.0.0.1:${infraPorts.elasticsearch}/_cluster/health?wait_for_status=yellow&timeout=1s`,
        { signal },
      );
      if (!response.ok) return false;
      const body = (await response.json()) as { status?: string };
      return body.status === 'green' || body.status === 'yellow';
    }, 3_000),
};
