import { join } from 'node:path';
import { infraPorts } from '../endpoints.js';
import { downloadMaven } from '../lib/download.js';
import { unpackOnce } from '../lib/archive.js';
import { findJava } from '../lib/java.js';
import { probe, type ServerContext, type ServerSpec } from '../lib/server-spec.js';

const version = '3.3.3';
const artifact = {
  groupId: 'io.apicurio',
  artifactId: 'apicurio-registry-app',
  version,
  classifier: 'all',
  extension: 'tar.gz',
} as const;

function home(context: ServerContext): string {
  return join(context.layout.installs, `apicurio-registry-${version}`);
}

/**
 * Apicurio Registry 3.x (the runnable Quarkus distribution Maven Central carries as
 * apicurio-registry-app:<v>:tar.gz:all), serving the Confluent Schema Registry API at /apis/ccompat/v7.
 * Storage: an H2 file under the server's data folder, so registered schemas survive a restart. Needs Java 21+.
 */
export const registryServer: ServerSpec = {
  name: 'registry',
  summary: `Apicurio Registry ${version} (Confluent API at /apis/ccompat/v7)`,
  ports: [infraPorts.registry, infraPorts.registryManagement],
  endpoint: `http://127.0.0.1:${infraPorts.registry}/apis/ccompat/v7`,
  dependsOn: [],
  startTimeoutMs: 120_000,
  stopGraceMs: 20_000,

  async install(context) {
    const archive = await downloadMaven(artifact, context.layout.downloads);
    unpackOnce(archive, home(context), `Apicurio Registry ${version}`);
  },

  async prepare(context) {
    const java = findJava(21);
    return {
      command: java.java,
      args: [
        '-Xms64m',
        '-Xmx256m',
        '-XX:MaxMetaspaceSize=192m',
        '-XX:+UseSerialGC',
        '-XX:TieredStopAtLevel=1',
        '-jar',
        'quarkus-run.jar',
      ],
      cwd: home(context),
      env: {
        QUARKUS_HTTP_HOST: '127.0.0.1',
        QUARKUS_HTTP_PORT: String(infraPorts.registry),
        QUARKUS_MANAGEMENT_HOST: '127.0.0.1',
        QUARKUS_MANAGEMENT_PORT: String(infraPorts.registryManagement),
        QUARKUS_HTTP_ACCESS_LOG_ENABLED: 'false',
        APICURIO_DATASOURCE_URL: `jdbc:h2:file:${join(context.paths.data, 'registry')};DB_CLOSE_ON_EXIT=FALSE`,
        APICURIO_DATASOURCE_JDBC_INITIAL_SIZE: '2',
        APICURIO_DATASOURCE_JDBC_MIN_SIZE: '2',
        APICURIO_DATASOURCE_JDBC_MAX_SIZE: '20',
        // Subjects without their own setting get the project's rule too (Apicurio's default is NONE).
        APICURIO_RULES_GLOBAL_COMPATIBILITY: 'BACKWARD_TRANSITIVE',
      },
    };
  },

  healthy: () =>
    probe(async (signal) => {
      const response = await fetch(`http://127.0.0.1:${infraPorts.registryManagement}/health/ready`, {
        signal,
      });
      return response.ok;
    }),
};
