import { createHmac } from 'node:crypto';
import type { SaslMechanism } from './mechanism';
import { safeEqual } from './mechanism';

/**
 * CRAM-MD5, RFC 2195: a fresh `<random.time@host>` challenge per attempt (MailHog's was fixed, so
 * answers could be replayed: D14); the answer is `user SP hex(HMAC-MD5(password, challenge))`.
 */
export const cramMd5Mechanism: SaslMechanism = {
  name: 'CRAM-MD5',
  needsPasswordLookup: true,
  start(initial, context) {
    if (initial !== undefined) return { kind: 'malformed', detail: 'CRAM-MD5 takes no initial response' };
    const challenge = Buffer.from(
      `<${context.randomBytes(8).toString('hex')}.${context.now()}@${context.hostname}>`,
    );
    return {
      kind: 'challenge',
      challenge,
      next: (response) => {
        const text = response.toString('utf8');
        const space = text.lastIndexOf(' ');
        const digest = text.slice(space + 1).toLowerCase();
        if (space <= 0 || !/^[0-9a-f]{32}$/.test(digest))
          return { kind: 'malformed', detail: 'CRAM-MD5 wants user SP digest' };
        const username = text.slice(0, space);
        return {
          kind: 'done',
          credentials: {
            method: 'CRAM-MD5',
            username,
            validatePassword: (password) =>
              safeEqual(
                Buffer.from(createHmac('md5', password).update(challenge).digest('hex')),
                Buffer.from(digest),
              ),
          },
        };
      },
    };
  },
};
