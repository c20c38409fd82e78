import type { Extension } from '../extension';
import { reply } from '../replies';

/** 8BITMIME, RFC 6152: `BODY=7BIT|8BITMIME` (and `BINARYMIME` while that extension is on, RFC 3030). */
export const eightBitMime: Extension = {
  name: '8BITMIME',
  ehlo: () => '8BITMIME',
  mailParameters: {
    BODY(value, target, protocol) {
      const body = value === true ? '' : value.toUpperCase();
      if (body === '7BIT' || body === '8BITMIME') target.envelope.bodyType = body;
      // RFC 3030 §3: BINARYMIME is usable only with BDAT, so only while CHUNKING is on too.
      else if (
        body === 'BINARYMIME' &&
        protocol.hasExtension('BINARYMIME') &&
        protocol.hasExtension('CHUNKING')
      )
        target.envelope.bodyType = body;
      else return reply('BadParameterValue', 'BODY');
    },
  },
};

/** BINARYMIME, RFC 3030 §3: binary content, only with BDAT (DATA gets 503). Needs CHUNKING. */
export const binaryMime: Extension = {
  name: 'BINARYMIME',
  ehlo: (protocol) => (protocol.hasExtension('CHUNKING') ? 'BINARYMIME' : undefined),
};
