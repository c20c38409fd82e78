import type { Extension } from '../extension';

/** PIPELINING, RFC 2920: commands are always read and answered in order; this only advertises it. */
export const pipelining: Extension = { name: 'PIPELINING', ehlo: () => 'PIPELINING' };
