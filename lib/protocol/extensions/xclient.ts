import type { Extension } from '../extension';
import { isIPv4, isIPv6, parseParameters } from '../address';
import { isAllowed, type AllowList } from '../allow-list';
import type { Reply } from '../reply';
import { reply } from '../replies';
import { State } from '../state';
import type { Protocol } from '../protocol';
import { decodeXtext } from './dsn';

export type { AllowList };

function allowed(allow: AllowList, protocol: Protocol): boolean {
  const peer = (protocol.session.extra.peerAddress as string | undefined) ?? protocol.session.remoteAddress;
  return isAllowed(allow, peer);
}

const XCLIENT_ATTRIBUTES = ['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'LOGIN', 'DESTADDR', 'DESTPORT'];
const XFORWARD_ATTRIBUTES = ['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'IDENT', 'SOURCE'];

const isAddress = (value: string): boolean => isIPv4(value) || isIPv6(value.replace(/^IPV6:/i, ''));
const isPort = (value: string): boolean => /^\d{1,5}$/.test(value) && Number(value) <= 65535;

/**
 * What a value must look like, as Postfix checks it (XCLIENT_README, XFORWARD_README); a value that
 * fails gets `501 5.5.4`, and no value may hold a control character (they end up in logs and in
 * `Received:` headers).
 */
const VALID: Readonly<Record<string, (value: string) => boolean>> = {
  ADDR: isAddress,
  DESTADDR: isAddress,
  PORT: isPort,
  DESTPORT: isPort,
  PROTO: (value) => /^E?SMTP$/i.test(value),
  SOURCE: (value) => /^(LOCAL|REMOTE)$/i.test(value),
};

/**
 * Parses `NAME=value …` (xtext values, `[UNAVAILABLE]`/`[TEMPUNAVAIL]` meaning unknown): the values,
 * or the refusal.
 */
function attributes(args: string, names: string[], verb: string): Map<string, string | undefined> | Reply {
  const parsed = parseParameters(args);
  if (!parsed.ok || parsed.params.size === 0) return reply('SyntaxError', `${verb} attribute=value ...`);
  const out = new Map<string, string | undefined>();
  for (const [key, value] of parsed.params) {
    if (!names.includes(key) || value === true) return reply('SyntaxError', `${verb} attribute=value ...`);
    const decoded = decodeXtext(value);
    if (/^\[(UNAVAILABLE|TEMPUNAVAIL)\]$/i.test(decoded)) {
      out.set(key, undefined);
      continue;
    }
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(decoded) || VALID[key]?.(decoded) === false)
      return reply('BadParameterValue', key);
    out.set(key, decoded);
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
          const values = attributes(command.args, XCLIENT_ATTRIBUTES, 'XCLIENT');
          if (!(values instanceof Map)) return values;
          const session = protocol.session;
          session.extra.peerAddress ??= session.remoteAddress;
          if (values.has('ADDR')) session.remoteAddress = values.get('ADDR')?.replace(/^IPV6:/i, '');
          if (values.has('PORT')) session.remotePort = portOf(values.get('PORT'));
          // The login belongs to the client XCLIENT describes: without LOGIN it has none, and never
          // inherits the proxy's own AUTH (Postfix resets SASL state the same way).
          session.user = values.get('LOGIN');
          if (values.has('DESTADDR')) session.localAddress = values.get('DESTADDR')?.replace(/^IPV6:/i, '');
          if (values.has('DESTPORT')) session.localPort = portOf(values.get('DESTPORT'));
          // Clients may split attributes over several XCLIENT commands (XCLIENT_README note 1); the
          // login alone goes with each command, as above.
          const previous = (session.extra.xclient as Record<string, string | undefined> | undefined) ?? {};
          const merged = { ...previous, ...Object.fromEntries(values) };
          if (!values.has('LOGIN')) delete merged.LOGIN;
          session.extra.xclient = merged;
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
          const values = attributes(command.args, XFORWARD_ATTRIBUTES, 'XFORWARD');
          if (!(values instanceof Map)) return values;
          const previous = (protocol.session.extra.xforward as Record<string, string | undefined>) ?? {};
          protocol.session.extra.xforward = { ...previous, ...Object.fromEntries(values) };
          return reply('Ok');
        },
      },
    },
  };
}

function portOf(value: string | undefined): number | undefined {
  return value === undefined ? undefined : Number(value);
}
