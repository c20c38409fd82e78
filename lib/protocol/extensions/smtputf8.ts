import type { Extension } from '../extension';
import { reply } from '../replies';

/**
 * SMTPUTF8, RFC 6531: the MAIL parameter `SMTPUTF8` allows UTF-8 in the sender and recipient
 * addresses of that transaction; without it they get 553 5.6.7 (the core checks).
 */
export const smtpUtf8: Extension = {
  name: 'SMTPUTF8',
  ehlo: () => 'SMTPUTF8',
  mailParameters: {
    SMTPUTF8(value, target) {
      if (value !== true) return reply('BadParameterValue', 'SMTPUTF8');
      target.envelope.smtputf8 = true;
    },
  },
};
