import type { Extension } from '../extension';
import { reply } from '../replies';

// xtext, RFC 3461 §4: printable ASCII except "+" and "=", or "+" and two upper-case hex digits.
const XTEXT = /^([\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$/;
const NOTIFY_VALUES = new Set(['SUCCESS', 'FAILURE', 'DELAY']);

/** Decodes xtext (`+2B` → `+`). */
export function decodeXtext(text: string): string {
  return text.replace(/\+([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/**
 * DSN, RFC 3461: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT, validated (bad values → 501)
 * and handed to the application in the envelope. Sending the DSNs is the application's business.
 */
export const dsn: Extension = {
  name: 'DSN',
  ehlo: () => 'DSN',
  mailParameters: {
    RET(value, target) {
      const ret = value === true ? '' : value.toUpperCase();
      if (ret !== 'FULL' && ret !== 'HDRS') return reply('BadParameterValue', 'RET');
      target.envelope.dsn = { ...target.envelope.dsn, ret };
    },
    ENVID(value, target) {
      if (value === true || value.length > 100 || !XTEXT.test(value))
        return reply('BadParameterValue', 'ENVID');
      target.envelope.dsn = { ...target.envelope.dsn, envid: decodeXtext(value) };
    },
  },
  rcptParameters: {
    NOTIFY(value, target) {
      const list = value === true ? [] : value.toUpperCase().split(',');
      const valid =
        list.length > 0 &&
        new Set(list).size === list.length &&
        (list.length === 1 && list[0] === 'NEVER' ? true : list.every((v) => NOTIFY_VALUES.has(v)));
      if (!valid || target.recipient === undefined) return reply('BadParameterValue', 'NOTIFY');
      target.recipient.dsn = {
        ...target.recipient.dsn,
        notify: list as Array<'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY'>,
      };
    },
    ORCPT(value, target) {
      const semi = value === true ? -1 : value.indexOf(';');
      if (value === true || semi <= 0 || target.recipient === undefined)
        return reply('BadParameterValue', 'ORCPT');
      const addrType = value.slice(0, semi);
      const address = value.slice(semi + 1);
      if (!/^[A-Za-z0-9-]+$/.test(addrType) || address === '' || !XTEXT.test(address)) {
        return reply('BadParameterValue', 'ORCPT');
      }
      target.recipient.dsn = {
        ...target.recipient.dsn,
        orcpt: { addrType: addrType.toUpperCase(), address: decodeXtext(address) },
      };
    },
  },
};
