import type { Extension } from '../extension';
import { reply } from '../replies';

/** REQUIRETLS, RFC 8689 (opt-in): advertised over TLS only; the MAIL flag is recorded in the envelope. */
export const requireTls: Extension = {
  name: 'REQUIRETLS',
  ehlo: (protocol) => (protocol.session.secure ? 'REQUIRETLS' : undefined),
  mailParameters: {
    REQUIRETLS(value, target, protocol) {
      // RFC 8689 §4.1: REQUIRETLS on a session without TLS is refused.
      if (!protocol.session.secure) return reply('RequireTlsNeedsTls');
      if (value !== true) return reply('BadParameterValue', 'REQUIRETLS');
      target.envelope.requireTls = true;
    },
  },
};
