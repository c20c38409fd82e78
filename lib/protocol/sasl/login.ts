import { passwordCredentials, type SaslMechanism, type SaslStep } from './mechanism';

const USERNAME_PROMPT = Buffer.from('Username:');
const PASSWORD_PROMPT = Buffer.from('Password:');

/** LOGIN (draft-murchison-sasl-login): username then password, each after its prompt; the initial response is the username. */
export const loginMechanism: SaslMechanism = {
  name: 'LOGIN',
  start(initial) {
    if (initial !== undefined) return askPassword(initial.toString('utf8'));
    return {
      kind: 'challenge',
      challenge: USERNAME_PROMPT,
      next: (user) => askPassword(user.toString('utf8')),
    };
  },
};

function askPassword(username: string): SaslStep {
  return {
    kind: 'challenge',
    challenge: PASSWORD_PROMPT,
    next: (password) => ({
      kind: 'done',
      // LOGIN names no charset (old clients send Latin-1): the text may be lossy, the check is not.
      credentials: passwordCredentials('LOGIN', username, password.toString('utf8'), undefined, password),
    }),
  };
}
