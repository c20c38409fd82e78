/**
 * Throw-away self-signed TLS server certificates, generated at call time with nothing but
 * `node:crypto` and the DER encoder in `./der`. Meant for STARTTLS in tests, examples and the
 * mail catcher: no private key ever lives in the repository.
 */
import * as crypto from 'node:crypto';
import { parseIPv4, parseIPv6 } from '../protocol/ip';
import * as der from './der';

export interface SelfSignedOptions {
  /** Subject (and issuer) common name. Default `'localhost'`. */
  commonName?: string;
  /**
   * Subject alternative names. DNS names become dNSName entries; IPv4/IPv6 literals such as
   * `'127.0.0.1'` and `'::1'` become iPAddress entries. Default `['localhost']`.
   */
  altNames?: string[];
  /** Validity in days, counted from now. Default 365. */
  days?: number;
  /** `'ec'` (P-256, fast to generate) or `'rsa'` (2048-bit). Default `'ec'`. */
  keyType?: 'rsa' | 'ec';
}

export interface SelfSignedCertificate {
  /** Private key, PEM PKCS#8 (`-----BEGIN PRIVATE KEY-----`). */
  key: string;
  /** Certificate, PEM X.509. */
  cert: string;
  /** SHA-256 fingerprint as colon-separated upper-case hex, as in `X509Certificate#fingerprint256`. */
  fingerprint256: string;
}

const OID = {
  commonName: '2.5.4.3',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
} as const;

/** KeyUsage bit positions (RFC 5280 §4.2.1.3). */
const KEY_USAGE = { digitalSignature: 0, keyEncipherment: 2 } as const;

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

export function createSelfSignedCertificate(options: SelfSignedOptions = {}): SelfSignedCertificate {
  const commonName = options.commonName ?? 'localhost';
  const altNames = options.altNames ?? ['localhost'];
  const days = options.days ?? 365;
  const keyType = options.keyType ?? 'ec';

  // ub-common-name is 64 characters (RFC 5280 Appendix A.1).
  if (commonName.length === 0 || [...commonName].length > 64) {
    throw new RangeError('createSelfSignedCertificate: commonName must be 1-64 characters');
  }
  if (!Number.isFinite(days) || days <= 0) {
    throw new RangeError('createSelfSignedCertificate: days must be a positive number');
  }
  if (keyType !== 'ec' && keyType !== 'rsa') {
    throw new TypeError(`createSelfSignedCertificate: unsupported keyType ${String(keyType)}`);
  }

  const { publicKey, privateKey } =
    keyType === 'ec'
      ? crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });

  // ecdsa-with-SHA256 MUST omit parameters (RFC 5758 §3.2); sha256WithRSAEncryption carries an
  // explicit NULL (RFC 4055 §5). The same AlgorithmIdentifier goes in the TBS and the outer
  // Certificate, which RFC 5280 §4.1.1.2 requires to match.
  const signatureAlgorithm =
    keyType === 'ec'
      ? der.sequence(der.oid(OID.ecdsaWithSHA256))
      : der.sequence(der.oid(OID.sha256WithRSAEncryption), der.nullValue());

  // Name = RDNSequence with a single CN; UTF8String is the RFC 5280 §4.1.2.4 choice for new
  // certificates. Issuer and subject are encoded identically, which is what makes it self-issued.
  const name = der.sequence(der.set(der.sequence(der.oid(OID.commonName), der.utf8String(commonName))));

  // Whole seconds only: X.509 times carry no fractions (RFC 5280 §4.1.2.5). Backdating by an hour
  // tolerates modest clock skew between the peers.
  const now = Math.floor(Date.now() / 1000) * 1000;
  const notBefore = new Date(now - HOUR_MS);
  const notAfter = new Date(now + Math.round(days * DAY_MS));

  const tbsCertificate = der.sequence(
    der.explicit(0, der.integer(2)), // version v3 (value 2), RFC 5280 §4.1.2.1
    der.integer(randomSerial()),
    signatureAlgorithm,
    name, // issuer
    der.sequence(der.x509Time(notBefore), der.x509Time(notAfter)),
    name, // subject
    // Already a DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), so it is embedded verbatim.
    publicKey.export({ type: 'spki', format: 'der' }),
    der.explicit(3, der.sequence(...buildExtensions(keyType, altNames))), // RFC 5280 §4.1.2.9
  );

  // For EC keys node emits the DER ECDSA-Sig-Value that RFC 3279 §2.2.3 puts in the BIT STRING;
  // for RSA it is PKCS#1 v1.5 (RFC 3279 §2.2.1).
  const signature = crypto.sign('sha256', tbsCertificate, privateKey);
  const certificate = der.sequence(tbsCertificate, signatureAlgorithm, der.bitString(signature));

  const cert = toPem('CERTIFICATE', certificate);
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

  // Self-check with OpenSSL's own parser: fail here rather than in some later TLS handshake.
  const x509 = new crypto.X509Certificate(cert);
  if (!x509.checkPrivateKey(privateKey) || !x509.verify(publicKey)) {
    throw new Error('createSelfSignedCertificate: generated certificate failed its self-check');
  }

  return { key, cert, fingerprint256: x509.fingerprint256 };
}

/**
 * Positive 16-byte serial. RFC 5280 §4.1.2.2 wants a positive integer of at most 20 octets, and
 * CA/B BR §7.1 at least 64 bits of randomness so that two calls never collide.
 */
function randomSerial(): Buffer {
  const serial = crypto.randomBytes(16);
  serial[0] &= 0x7f; // clear the sign bit so no 0x00 pad is needed and the value stays positive
  if (serial.every((b) => b === 0)) serial[15] = 1; // zero is not a positive serial
  return serial;
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }. */
function extension(extnId: string, critical: boolean, value: Buffer): Buffer {
  // DER omits a field equal to its DEFAULT (X.690 §11.5), so non-critical means "absent".
  return critical
    ? der.sequence(der.oid(extnId), der.boolean(true), der.octetString(value))
    : der.sequence(der.oid(extnId), der.octetString(value));
}

function buildExtensions(keyType: 'rsa' | 'ec', altNames: string[]): Buffer[] {
  const extensions = [
    // cA DEFAULT FALSE is omitted under DER, so "CA:FALSE" is an empty SEQUENCE (RFC 5280 §4.2.1.9).
    extension(OID.basicConstraints, true, der.sequence()),
    // keyEncipherment only makes sense for RSA key transport; RFC 5480 §3 limits an EC end-entity
    // key to digitalSignature / nonRepudiation / keyAgreement. Critical per RFC 5280 §4.2.1.3.
    extension(
      OID.keyUsage,
      true,
      der.namedBits(
        keyType === 'rsa'
          ? [KEY_USAGE.digitalSignature, KEY_USAGE.keyEncipherment]
          : [KEY_USAGE.digitalSignature],
      ),
    ),
    extension(OID.extKeyUsage, false, der.sequence(der.oid(OID.serverAuth))), // RFC 5280 §4.2.1.12
  ];
  // GeneralNames is SIZE (1..MAX) (RFC 5280 §4.2.1.6), so an empty list means no extension.
  // The subject is non-empty, so the extension stays non-critical.
  if (altNames.length > 0) {
    extensions.push(extension(OID.subjectAltName, false, der.sequence(...altNames.map(generalName))));
  }
  return extensions;
}

/** GeneralName: dNSName [2] IA5String or iPAddress [7] OCTET STRING, both IMPLICIT (RFC 5280 §4.2.1.6). */
function generalName(altName: string): Buffer {
  const ip = parseIp(altName);
  if (ip) return der.implicitPrimitive(7, ip);
  // dNSName is IA5String: internationalized names must be given as A-labels (RFC 5280 §7.2).
  if (altName.length === 0 || !/^[\x21-\x7e]+$/.test(altName)) {
    throw new RangeError(`createSelfSignedCertificate: invalid DNS altName ${JSON.stringify(altName)}`);
  }
  return der.implicitPrimitive(2, Buffer.from(altName, 'latin1'));
}

/** Network-order bytes of an IPv4 (4 octets) or IPv6 (16 octets) literal, or null for anything else. */
function parseIp(value: string): Buffer | null {
  const v4 = parseIPv4(value);
  if (v4) return Buffer.from(v4);
  if (!value.includes(':')) return null;
  const v6 = parseIPv6(value);
  if (!v6) throw new RangeError(`createSelfSignedCertificate: invalid IPv6 altName ${JSON.stringify(value)}`);
  return Buffer.from(v6);
}

function toPem(label: string, body: Buffer): string {
  const lines = body.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
