import type { SaslMechanism, SaslStep } from './mechanism';

/**
 * XOAUTH2 (Google's SASL profile of OAuth 2.0 bearer tokens):
 * `user=<name>^Aauth=Bearer <token>^A^A`. On failure the server sends a 334 with a JSON error and
 * the client answers with an empty line before the 535.
 */
export const xoauth2Mechanism: SaslMechanism = {
  name: 'XOAUTH2',
  needsValidateHook: true,
  start(initial) {
    if (initial !== undefined) return complete(initial);
    return { kind: 'challenge', challenge: Buffer.alloc(0), next: complete };
  },
};

const FAILURE = Buffer.from(
  JSON.stringify({ status: '401', schemes: 'bearer', scope: 'https://mail.google.com/' }),
);

function complete(message: Buffer): SaslStep {
  const fields = new Map<string, string>();
  for (const part of message.toString('utf8').split('\x01')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).toLowerCase(), part.slice(eq + 1));
  }
  const username = fields.get('user');
  const auth = fields.get('auth');
  const match = auth === undefined ? null : /^Bearer\s+(.+)$/i.exec(auth);
  if (!username || match === null)
    return { kind: 'malformed', detail: 'XOAUTH2 wants user=…^Aauth=Bearer …^A^A' };
  return {
    kind: 'done',
    credentials: { method: 'XOAUTH2', username, accessToken: match[1], validatePassword: () => false },
    onFailure: { challenge: FAILURE },
  };
}
