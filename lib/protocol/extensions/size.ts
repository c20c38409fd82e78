import type { Extension } from '../extension';
import { reply } from '../replies';

/**
 * SIZE, RFC 1870: the limit is advertised (`SIZE 0`-free form `SIZE` when there is none), a
 * declared size over it is refused at MAIL (552 5.3.4), and the core counts the real size.
 */
export const size: Extension = {
  name: 'SIZE',
  ehlo: (protocol) => (protocol.maxMessageSize > 0 ? `SIZE ${protocol.maxMessageSize}` : 'SIZE'),
  mailParameters: {
    SIZE(value, target, protocol) {
      if (value === true || !/^\d{1,20}$/.test(value)) return reply('BadParameterValue', 'SIZE');
      const declared = Number(value);
      if (protocol.maxMessageSize > 0 && declared > protocol.maxMessageSize) return reply('MessageTooBig');
      target.envelope.declaredSize = declared;
    },
  },
};
