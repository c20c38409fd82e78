import type { Extension } from '../extension';
import { isReply } from '../reply';
import { reply } from '../replies';
import { State } from '../state';
import type { MaybePromise } from '../types';

/**
 * STARTTLS, RFC 3207: offered while a TLS hook is set and TLS is not up yet. The reply goes out
 * first; the driver then upgrades and calls `tlsStarted()`, which resets the session.
 */
export const startTls: Extension = {
  name: 'STARTTLS',
  ehlo: (protocol) =>
    protocol.tlsHandler !== undefined && !protocol.session.secure ? 'STARTTLS' : undefined,
  verbs: {
    STARTTLS: {
      from: [State.Establish, State.Mail],
      allowedBeforeTls: true,
      handle(command, protocol): MaybePromise<ReturnType<typeof reply> | null> {
        if (command.args !== '') return reply('SyntaxError', 'no parameters allowed');
        if (protocol.session.secure) return reply('TlsAlreadyActive');
        const hook = protocol.tlsHandler;
        if (hook === undefined) return reply('NotImplemented');
        const decide = (answer: boolean | ReturnType<typeof reply>) => {
          if (answer === true) {
            protocol.beginTls();
            return null;
          }
          return isReply(answer) ? answer : reply('TlsUnavailable');
        };
        const answer = hook(protocol.session);
        return answer instanceof Promise ? answer.then(decide) : decide(answer);
      },
    },
  },
};
