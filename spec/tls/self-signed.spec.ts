import * as crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import * as der from '../../lib/tls/der';
import { createSelfSignedCertificate, type SelfSignedCertificate } from '../../lib/tls/self-signed';

const DAY_MS = 24 * 60 * 60 * 1000;
const HOUR_MS = 60 * 60 * 1000;
const ALT_NAMES = ['localhost', 'mail.example.test', '127.0.0.1', '::1'];

// Generate once per key type: RSA keygen dominates the run time.
const certs: Record<'ec' | 'rsa', SelfSignedCertificate> = {} as Record<'ec' | 'rsa', SelfSignedCertificate>;
let createdAt = 0;

beforeAll(() => {
  createdAt = Date.now();
  certs.ec = createSelfSignedCertificate({ altNames: ALT_NAMES });
  certs.rsa = createSelfSignedCertificate({ keyType: 'rsa', altNames: ALT_NAMES });
});

describe.each(['ec', 'rsa'] as const)('createSelfSignedCertificate (%s)', (keyType) => {
  it('produces PEM PKCS#8 key and PEM certificate', () => {
    const { key, cert } = certs[keyType];
    expect(key).toMatch(/^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n$/);
    expect(cert).toMatch(/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n$/);
    const privateKey = crypto.createPrivateKey(key);
    expect(privateKey.asymmetricKeyType).toBe(keyType);
    if (keyType === 'ec') expect(privateKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    else expect(privateKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
  });

  it('has the requested subject, issuer and subjectAltNames', () => {
    const x509 = new crypto.X509Certificate(certs[keyType].cert);
    expect(x509.subject).toBe('CN=localhost');
    expect(x509.issuer).toBe(x509.subject);
    expect(x509.subjectAltName).toContain('DNS:localhost');
    expect(x509.subjectAltName).toContain('DNS:mail.example.test');
    expect(x509.subjectAltName).toContain('IP Address:127.0.0.1');
    // checkHost/checkIP match against the SAN entries, independent of OpenSSL's print format.
    expect(x509.checkHost('localhost')).toBe('localhost');
    expect(x509.checkHost('mail.example.test')).toBe('mail.example.test');
    expect(x509.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x509.checkIP('::1')).toBe('::1');
    expect(x509.checkIP('127.0.0.2')).toBeUndefined();
    expect(x509.checkHost('example.test')).toBeUndefined();
  });

  it('is valid from one hour ago until `days` from now', () => {
    const x509 = new crypto.X509Certificate(certs[keyType].cert);
    const validFrom = Date.parse(x509.validFrom);
    const validTo = Date.parse(x509.validTo);
    // Times are whole seconds, so allow a little slack around the generation instant.
    expect(Math.abs(validFrom - (createdAt - HOUR_MS))).toBeLessThan(5000);
    expect(Math.abs(validTo - (createdAt + 365 * DAY_MS))).toBeLessThan(5000);
  });

  it('is a v3 server-auth leaf whose key matches and whose self-signature verifies', () => {
    const { key, cert, fingerprint256 } = certs[keyType];
    const x509 = new crypto.X509Certificate(cert);
    expect(x509.ca).toBe(false);
    expect(x509.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // Node reports extKeyUsage here
    expect(x509.checkPrivateKey(crypto.createPrivateKey(key))).toBe(true);
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(fingerprint256).toBe(x509.fingerprint256);
    expect(fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    // A foreign key must not verify.
    const other = new crypto.X509Certificate(certs[keyType === 'ec' ? 'rsa' : 'ec'].cert);
    expect(x509.verify(other.publicKey)).toBe(false);
    expect(x509.checkPrivateKey(crypto.createPrivateKey(certs[keyType === 'ec' ? 'rsa' : 'ec'].key))).toBe(
      false,
    );
  });

  it('completes a real TLS handshake over loopback and round-trips data', async () => {
    const { key, cert } = certs[keyType];
    const server = tls.createServer({ key, cert }, (socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      // By DNS name (SNI + dNSName SAN) and by bare IP (identity checked against the iPAddress SAN).
      for (const opts of [{ servername: 'localhost' }, {}]) {
        const client = tls.connect({ host: '127.0.0.1', port, ca: cert, ...opts });
        try {
          await new Promise<void>((resolve, reject) => {
            client.once('secureConnect', resolve);
            client.once('error', reject);
          });
          expect(client.authorized).toBe(true);
          expect(client.authorizationError).toBeNull();
          const echoed = new Promise<string>((resolve, reject) => {
            let data = '';
            client.setEncoding('utf8');
            client.on('data', (chunk: string) => {
              data += chunk;
              if (data.length >= 10) resolve(data);
            });
            client.once('error', reject);
          });
          client.write('EHLO test\n');
          await expect(echoed).resolves.toBe('EHLO test\n');
        } finally {
          client.destroy();
        }
      }
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('createSelfSignedCertificate options', () => {
  it('defaults to an EC localhost certificate', () => {
    const { key, cert } = createSelfSignedCertificate();
    const x509 = new crypto.X509Certificate(cert);
    expect(crypto.createPrivateKey(key).asymmetricKeyType).toBe('ec');
    expect(x509.subject).toBe('CN=localhost');
    expect(x509.subjectAltName).toBe('DNS:localhost');
  });

  it('gives a fresh key and serial on every call', () => {
    const a = createSelfSignedCertificate();
    const b = createSelfSignedCertificate();
    const xa = new crypto.X509Certificate(a.cert);
    const xb = new crypto.X509Certificate(b.cert);
    expect(a.key).not.toBe(b.key);
    expect(xa.serialNumber).not.toBe(xb.serialNumber);
    expect(a.fingerprint256).not.toBe(b.fingerprint256);
    // Positive 16-byte serial: at most 32 hex digits and the sign bit clear.
    for (const serial of [xa.serialNumber, xb.serialNumber]) {
      expect(serial).toMatch(/^[0-9A-F]{1,32}$/);
      if (serial.length === 32) expect(parseInt(serial[0], 16)).toBeLessThan(8);
    }
  });

  it('honours commonName and days, switching to GeneralizedTime past 2049', () => {
    const short = new crypto.X509Certificate(
      createSelfSignedCertificate({ commonName: 'mx.example.test', days: 2 }).cert,
    );
    expect(short.subject).toBe('CN=mx.example.test');
    expect(Date.parse(short.validTo) - Date.parse(short.validFrom)).toBe(2 * DAY_MS + HOUR_MS);

    const days = Math.ceil((Date.UTC(2051, 0, 1) - Date.now()) / DAY_MS);
    const long = new crypto.X509Certificate(createSelfSignedCertificate({ days }).cert);
    expect(new Date(Date.parse(long.validTo)).getUTCFullYear()).toBeGreaterThanOrEqual(2051);
    expect(long.verify(long.publicKey)).toBe(true);
  });

  it('omits subjectAltName when given no altNames', () => {
    const x509 = new crypto.X509Certificate(createSelfSignedCertificate({ altNames: [] }).cert);
    expect(x509.subjectAltName).toBeUndefined();
  });

  it('rejects invalid options', () => {
    expect(() => createSelfSignedCertificate({ days: 0 })).toThrow(RangeError);
    expect(() => createSelfSignedCertificate({ days: Number.NaN })).toThrow(RangeError);
    expect(() => createSelfSignedCertificate({ commonName: '' })).toThrow(RangeError);
    expect(() => createSelfSignedCertificate({ commonName: 'x'.repeat(65) })).toThrow(RangeError);
    expect(() => createSelfSignedCertificate({ altNames: ['1::2::3'] })).toThrow(RangeError);
    expect(() => createSelfSignedCertificate({ altNames: ['bücher.example'] })).toThrow(RangeError);
  });
});

describe('der encoder', () => {
  const hex = (b: Buffer): string => b.toString('hex');

  it('encodes INTEGERs minimally and keeps them positive', () => {
    expect(hex(der.integer(0))).toBe('020100');
    expect(hex(der.integer(2))).toBe('020102');
    expect(hex(der.integer(128))).toBe('02020080');
    expect(hex(der.integer(Buffer.from([0, 0, 0x7f])))).toBe('02017f');
    expect(hex(der.integer(Buffer.from([0xff, 0x01])))).toBe('020300ff01');
  });

  it('encodes OIDs, long lengths, NamedBitLists and times', () => {
    expect(hex(der.oid('1.2.840.113549.1.1.11'))).toBe('06092a864886f70d01010b');
    expect(hex(der.oid('2.5.29.17'))).toBe('0603551d11');
    expect(hex(der.octetString(Buffer.alloc(200))).slice(0, 6)).toBe('0481c8');
    expect(hex(der.octetString(Buffer.alloc(300))).slice(0, 8)).toBe('0482012c');
    // digitalSignature(0) + keyEncipherment(2): one octet 0xa0 with 5 unused bits.
    expect(hex(der.namedBits([0, 2]))).toBe('030205a0');
    expect(der.x509Time(new Date(Date.UTC(2049, 11, 31, 23, 59, 59))).toString('latin1', 2)).toBe(
      '491231235959Z',
    );
    expect(hex(der.x509Time(new Date(Date.UTC(2050, 0, 1))).subarray(0, 1))).toBe('18');
    expect(der.x509Time(new Date(Date.UTC(2050, 0, 1))).toString('latin1', 2)).toBe('20500101000000Z');
  });

  it('sorts SET OF members and wraps explicit tags', () => {
    expect(hex(der.set(der.integer(2), der.integer(1)))).toBe('3106020101020102');
    expect(hex(der.explicit(0, der.integer(2)))).toBe('a003020102');
  });
});
