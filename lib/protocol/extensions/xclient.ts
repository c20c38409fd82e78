import type { Extension } from '../extension';
import { parseParameters } from '../address';
import { reply } from '../replies';
import { State } from '../state';
import type { Protocol } from '../protocol';
import { decodeXtext } from './dsn';

/** Who may send XCLIENT / XFORWARD: a list of addresses or a predicate over the real peer address. */
export type AllowList = string[] | ((address: string | undefined) => boolean);

function allowed(allow: AllowList, protocol: Protocol): boolean {
  const peer = (protocol.session.extra.peerAddress as string | undefined) ?? protocol.session.remoteAddress;
  return typeof allow === 'function' ? allow(peer) : allow.includes(peer ?? '');
}

const XCLIENT_ATTRIBUTES = ['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'LOGIN', 'DESTADDR', 'DESTPORT'];
const XFORWARD_ATTRIBUTES = ['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'IDENT', 'SOURCE'];

/** Parses `NAME=value …` (xtext values, `[UNAVAILABLE]`/`[TEMPUNAVAIL]` meaning unknown). */
function attributes(args: string, names: string[]): Map<string, string | undefined> | undefined {
  const parsed = parseParameters(args);
  if (!parsed.ok || parsed.params.size === 0) return undefined;
  const out = new Map<string, string | undefined>();
  for (const [key, value] of parsed.params) {
    if (!names.includes(key) || value === true) return undefined;
    const decoded = decodeXtext(value);
    out.set(key, /^\[(UNAVAILABLE|TEMPUNAVAIL)\]$/i.test(decoded) ? undefined : decoded);
  }
  return out;
}

/**
 * Postfix's XCLIENT (opt-in): a trusted proxy or filter tells the real client's address, name and
 * login. Only from allow-listed peers; the session then starts over with a new greeting.
 */
export function xclient(allow: AllowList): Extension {
  return {
    name: 'XCLIENT',
    ehlo: (protocol) => (allowed(allow, protocol) ? `XCLIENT ${XCLIENT_ATTRIBUTES.join(' ')}` : undefined),
    verbs: {
      XCLIENT: {
        from: [State.Establish, State.Mail],
        handle(command, protocol) {
          if (!allowed(allow, protocol)) return reply('XclientNotAuthorized');
          const values = attributes(command.args, XCLIENT_ATTRIBUTES);
          if (values === undefined) return reply('SyntaxError', 'XCLIENT attribute=value ...');
          const session = protocol.session;
          session.extra.peerAddress ??= session.remoteAddress;
          if (values.has('ADDR')) session.remoteAddress = values.get('ADDR')?.replace(/^IPV6:/i, '');
          if (values.has('PORT')) session.remotePort = Number(values.get('PORT')) || undefined;
          if (values.has('LOGIN')) session.user = values.get('LOGIN');
          if (values.has('DESTADDR')) session.localAddress = values.get('DESTADDR');
          if (values.has('DESTPORT')) session.localPort = Number(values.get('DESTPORT')) || undefined;
          session.extra.xclient = Object.fromEntries(values);
          protocol.restart();
          return protocol.greeting();
        },
      },
    },
  };
}

/** Postfix's XFORWARD (opt-in): attributes of the original client, recorded for the next message. */
export function xforward(allow: AllowList): Extension {
  return {
    name: 'XFORWARD',
    ehlo: (protocol) => (allowed(allow, protocol) ? `XFORWARD ${XFORWARD_ATTRIBUTES.join(' ')}` : undefined),
    verbs: {
      XFORWARD: {
        from: [State.Mail],
        handle(command, protocol) {
          if (!allowed(allow, protocol)) return reply('XclientNotAuthorized');
          const values = attributes(command.args, XFORWARD_ATTRIBUTES);
          if (values === undefined) return reply('SyntaxError', 'XFORWARD attribute=value ...');
          const previous = (protocol.session.extra.xforward as Record<string, string | undefined>) ?? {};
          protocol.session.extra.xforward = { ...previous, ...Object.fromEntries(values) };
          return reply('Ok');
        },
      },
    },
  };
}
