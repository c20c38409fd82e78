import { passwordCredentials, type SaslMechanism, type SaslStep } from './mechanism';

/** PLAIN, RFC 4616: `[authzid] NUL authcid NUL passwd`, as initial response or after an empty 334. */
export const plainMechanism: SaslMechanism = {
  name: 'PLAIN',
  start(initial) {
    if (initial !== undefined) return complete(initial);
    return { kind: 'challenge', challenge: Buffer.alloc(0), next: complete };
  },
};

function complete(message: Buffer): SaslStep {
  const text = message.toString('utf8');
  const parts = text.split('\0');
  if (parts.length !== 3 || parts[1] === '')
    return { kind: 'malformed', detail: 'PLAIN wants authzid NUL authcid NUL password' };
  const [authzid, username, password] = parts;
  return {
    kind: 'done',
    credentials: passwordCredentials('PLAIN', username, password, authzid || undefined),
  };
}
