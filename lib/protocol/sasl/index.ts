import { cramMd5Mechanism } from './cram-md5';
import { loginMechanism } from './login';
import type { SaslMechanism } from './mechanism';
import { plainMechanism } from './plain';
import { xoauth2Mechanism } from './xoauth2';

export * from './mechanism';
export { plainMechanism, loginMechanism, cramMd5Mechanism, xoauth2Mechanism };

/** The mechanisms the core knows, by name, in the order EHLO offers them. */
export const BUILT_IN_MECHANISMS: readonly SaslMechanism[] = [
  plainMechanism,
  loginMechanism,
  cramMd5Mechanism,
  xoauth2Mechanism,
];
