import type { Extension } from '../extension';
import { reply } from '../replies';
import { decodeSaslBase64 } from '../sasl';
import { State } from '../state';

/**
 * AUTH, RFC 4954: offered (and accepted) only when a hook can verify credentials, and only over TLS
 * when TLS is required. The exchange itself runs in the core's SASL mode (`beginSasl`).
 */
export const auth: Extension = {
  name: 'AUTH',
  ehlo(protocol) {
    if (protocol.requireTls && !protocol.session.secure) return undefined;
    const mechanisms = protocol.authenticationMechanisms();
    return mechanisms.length > 0 ? `AUTH ${mechanisms.join(' ')}` : undefined;
  },
  verbs: {
    AUTH: {
      from: [State.Mail],
      longLine: true,
      handle(command, protocol) {
        const offered = protocol.authenticationMechanisms();
        if (offered.length === 0) return reply('AuthNotEnabled');
        if (protocol.session.user !== undefined) return reply('AlreadyAuthenticated');
        const [name = '', initial, ...extra] = command.args.split(/[ \t]+/);
        if (name === '' || extra.length > 0) return reply('SyntaxError', 'AUTH mechanism [initial-response]');
        const mechanism = name.toUpperCase();
        if (!offered.includes(mechanism)) return reply('MechanismUnsupported');
        let response: Buffer | undefined;
        if (initial !== undefined) {
          response = decodeSaslBase64(initial);
          if (response === undefined) return reply('BadBase64');
        }
        protocol.beginSasl(mechanism, response);
        return null;
      },
    },
  },
  mailParameters: {
    // RFC 4954 §5: AUTH=<mailbox> or AUTH=<> on MAIL; recorded, trusted by nobody here.
    AUTH(value) {
      if (value === true) return reply('BadParameterValue', 'AUTH');
    },
  },
};
