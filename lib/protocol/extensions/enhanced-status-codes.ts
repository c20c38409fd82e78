import type { Extension } from '../extension';

/** ENHANCEDSTATUSCODES, RFC 2034: while it is on, replies carry their RFC 3463 code. */
export const enhancedStatusCodes: Extension = {
  name: 'ENHANCEDSTATUSCODES',
  ehlo: () => 'ENHANCEDSTATUSCODES',
};
