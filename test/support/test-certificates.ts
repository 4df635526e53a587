import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Whether openssl can be run here (the TLS tests make their certificates with it). */
export const haveOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore' });
}

/** A new P-256 key, as openssl's options for `req`. */
const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** PEM files of a key and its certificate. */
export interface CertificateFiles {
  readonly key: string;
  readonly cert: string;
}

/**
 * A self-signed certificate (one day) for `subject`, with `san` (e.g. `IP:127.0.0.1`): a server that is its
 * own CA. Files `<name>.key` and `<name>.pem` in `dir`.
 */
export function selfSigned(dir: string, name: string, subject: string, san: string): CertificateFiles {
  const files = { key: join(dir, `${name}.key`), cert: join(dir, `${name}.pem`) };
  openssl(
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    files.key,
    '-out',
    files.cert,
    '-days',
    '1',
    '-subj',
    subject,
    '-addext',
    `subjectAltName=${san}`,
  );
  return files;
}

/**
 * A private CA in `dir` (`ca.key`, `ca.pem`) that issues leaf certificates: a server's (with a DNS name) or a
 * client's, for mutual TLS. Strict TLS stacks (rustls) refuse a self-signed leaf as a trust anchor.
 */
export function testCa(dir: string): {
  readonly ca: string;
  issue(name: string, cn: string, usage: 'serverAuth' | 'clientAuth'): CertificateFiles;
} {
  const caKey = join(dir, 'ca.key');
  const ca = join(dir, 'ca.pem');
  openssl(
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    caKey,
    '-out',
    ca,
    '-days',
    '1',
    '-subj',
    '/CN=lightmem-test-ca',
  );
  return {
    ca,
    issue(name, cn, usage) {
      const files = { key: join(dir, `${name}.key`), cert: join(dir, `${name}.pem`) };
      const csr = join(dir, `${name}.csr`);
      const ext = join(dir, `${name}.ext`);
      writeFileSync(
        ext,
        [
          'basicConstraints=CA:FALSE',
          'keyUsage=digitalSignature',
          `extendedKeyUsage=${usage}`,
          ...(usage === 'serverAuth' ? [`subjectAltName=DNS:${cn}`] : []),
        ].join('\n'),
      );
      openssl('req', ...newKey, '-keyout', files.key, '-out', csr, '-subj', `/CN=${cn}`);
      openssl(
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        ca,
        '-CAkey',
        caKey,
        '-CAcreateserial',
        '-out',
        files.cert,
        '-days',
        '1',
        '-extfile',
        ext,
      );
      return files;
    },
  };
}
