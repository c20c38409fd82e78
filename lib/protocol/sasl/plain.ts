import { isUtf8 } from 'node:buffer';
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
  // RFC 4616 §2: all three fields are UTF-8; anything else is a malformed message, not a password.
  if (!isUtf8(message)) return { kind: 'malformed', detail: 'PLAIN credentials must be UTF-8' };
  const parts = message.toString('utf8').split('\0');
  if (parts.length !== 3 || parts[1] === '')
    return { kind: 'malformed', detail: 'PLAIN wants authzid NUL authcid NUL password' };
  const [authzid, username, password] = parts;
  // An authzid equal to the authcid asks for nothing more (RFC 4616 §2): only a different one is kept.
  const asSomeoneElse = authzid !== '' && authzid !== username ? authzid : undefined;
  return { kind: 'done', credentials: passwordCredentials('PLAIN', username, password, asSomeoneElse) };
}
