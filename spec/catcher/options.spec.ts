import * as os from 'node:os';
import { parseCatcherArgs, UsageError, USAGE, type CatcherOptions } from '../../lib/catcher/options';

/** Every flag of USAGE, with arguments and the options it must produce. */
const FLAGS: Record<string, { args: string[]; expect: (o: CatcherOptions) => void }> = {
  '--host': { args: ['--host', '0.0.0.0'], expect: (o) => expect(o.host).toBe('0.0.0.0') },
  '--port': { args: ['--port', '0'], expect: (o) => expect(o.port).toBe(0) },
  '--maildir': { args: ['--maildir', '/tmp/m'], expect: (o) => expect(o.maildir).toBe('/tmp/m') },
  '--hostname': { args: ['--hostname', 'mx.test'], expect: (o) => expect(o.hostname).toBe('mx.test') },
  '--tls': { args: ['--tls'], expect: (o) => expect(o.tls).toBe(true) },
  '--tls-cert': {
    args: ['--tls-cert', 'c.pem', '--tls-key', 'k.pem'],
    expect: (o) => {
      expect(o.tlsCert).toBe('c.pem');
      expect(o.tlsKey).toBe('k.pem');
      expect(o.tls).toBe(true); // a certificate implies STARTTLS
    },
  },
  '--tls-key': {
    args: ['--tls-key', 'k.pem', '--tls-cert', 'c.pem'],
    expect: (o) => expect(o.tlsKey).toBe('k.pem'),
  },
  '--tls-implicit': {
    args: ['--tls-implicit', '--tls-cert', 'c.pem', '--tls-key', 'k.pem'],
    expect: (o) => {
      expect(o.tlsImplicit).toBe(true);
      expect(o.tls).toBe(false); // no STARTTLS on top of implicit TLS
    },
  },
  '--auth': {
    args: ['--auth', 'alice:s3:cret', '--auth', 'bob:'],
    expect: (o) =>
      expect(o.auth).toEqual([
        { user: 'alice', pass: 's3:cret' },
        { user: 'bob', pass: '' },
      ]),
  },
  '--require-tls': { args: ['--require-tls'], expect: (o) => expect(o.requireTls).toBe(true) },
  '--require-auth': { args: ['--require-auth'], expect: (o) => expect(o.requireAuth).toBe(true) },
  '--max-size': { args: ['--max-size', '0'], expect: (o) => expect(o.maxSize).toBe(0) },
  '--max-recipients': { args: ['--max-recipients', '5'], expect: (o) => expect(o.maxRecipients).toBe(5) },
  '--record': { args: ['--record', 'rec'], expect: (o) => expect(o.record).toBe('rec') },
  '--idle-timeout': { args: ['--idle-timeout', '7'], expect: (o) => expect(o.idleTimeout).toBe(7) },
  '--max-clients': { args: ['--max-clients', '3'], expect: (o) => expect(o.maxClients).toBe(3) },
  '--lmtp': { args: ['--lmtp'], expect: (o) => expect(o.lmtp).toBe(true) },
  '--proxy': { args: ['--proxy'], expect: (o) => expect(o.proxy).toBe(true) },
  '--bare-newlines': {
    args: ['--bare-newlines', 'reject'],
    expect: (o) => expect(o.bareNewlines).toBe('reject'),
  },
  '--discard': { args: ['--discard'], expect: (o) => expect(o.discard).toBe(true) },
  '--workers': { args: ['--workers', '4'], expect: (o) => expect(o.workers).toBe(4) },
  '--fsync': { args: ['--fsync'], expect: (o) => expect(o.fsync).toBe(true) },
  '--json-log': { args: ['--json-log'], expect: (o) => expect(o.jsonLog).toBe(true) },
  '--quiet': { args: ['--quiet'], expect: (o) => expect(o.quiet).toBe(true) },
  '--help': { args: ['--help'], expect: (o) => expect(o.help).toBe(true) },
  '--fail-mail': { args: ['--fail-mail', '451'], expect: (o) => expect(o.faults.mail).toBe(451) },
  '--fail-rcpt': { args: ['--fail-rcpt', '550'], expect: (o) => expect(o.faults.rcpt).toBe(550) },
  '--fail-auth': { args: ['--fail-auth', '454'], expect: (o) => expect(o.faults.auth).toBe(454) },
  '--fail-data': { args: ['--fail-data', '554'], expect: (o) => expect(o.faults.data).toBe(554) },
  '--fail-rate': { args: ['--fail-rate', '0.25'], expect: (o) => expect(o.faults.rate).toBe(0.25) },
  '--fail-address': {
    args: ['--fail-address', 'X@Example.com', '--fail-address', 'y@example.com'],
    expect: (o) => expect(o.faults.addresses).toEqual(['x@example.com', 'y@example.com']),
  },
  '--drop-at': { args: ['--drop-at', 'rcpt'], expect: (o) => expect(o.faults.dropAt).toBe('rcpt') },
  '--throttle': { args: ['--throttle', '100'], expect: (o) => expect(o.faults.throttle).toBe(100) },
};

describe('parseCatcherArgs', () => {
  it('has the documented defaults', () => {
    const o = parseCatcherArgs([]);
    expect(o).toEqual({
      host: '127.0.0.1',
      port: 2525,
      maildir: './mail',
      hostname: os.hostname() || 'localhost',
      tls: false,
      tlsImplicit: false,
      auth: [],
      requireTls: false,
      requireAuth: false,
      maxSize: 26214400,
      maxRecipients: 1000,
      idleTimeout: 300,
      maxClients: 1000,
      lmtp: false,
      proxy: false,
      discard: false,
      workers: 1,
      fsync: false,
      jsonLog: false,
      quiet: false,
      bareNewlines: 'keep',
      faults: { rate: 1, addresses: [] },
      help: false,
    });
  });

  it('the table below covers every flag of USAGE', () => {
    const documented = [...new Set(USAGE.match(/--[a-z][a-z-]*/g))].sort();
    // `--to`, `--compare`, `--timeout` belong to the replay subcommand only (`--proxy` to both).
    const replayOnly = ['--to', '--compare', '--timeout'];
    const serveFlags = documented.filter((f) => !replayOnly.includes(f));
    expect(Object.keys(FLAGS).sort()).toEqual(serveFlags);
  });

  it.each(Object.entries(FLAGS))('parses %s', (_flag, { args, expect: check }) => {
    check(parseCatcherArgs(args));
  });

  it.each(Object.entries(FLAGS).filter(([, { args }]) => args.length === 2))(
    'parses %s in the --flag=value form',
    (flag, { args, expect: check }) => {
      check(parseCatcherArgs([`${flag}=${args[1]}`]));
    },
  );

  it('keeps everything after the first = as the value', () => {
    expect(parseCatcherArgs(['--auth=u:a=b']).auth).toEqual([{ user: 'u', pass: 'a=b' }]);
    expect(parseCatcherArgs(['--maildir=']).maildir).toBe('');
  });

  it('accepts -h, the serve subcommand and combinations', () => {
    expect(parseCatcherArgs(['-h']).help).toBe(true);
    const o = parseCatcherArgs(['serve', '--port=2600', '--tls', '--quiet', '--fail-rcpt', '451']);
    expect(o).toMatchObject({ port: 2600, tls: true, quiet: true, faults: { rcpt: 451, rate: 1 } });
  });

  it.each([
    [['--bogus'], /unknown option: --bogus/],
    [['extra'], /unexpected argument: extra/],
    [['-p', '25'], /unexpected argument: -p/],
    [['--port'], /--port needs a value/],
    [['--port', 'abc'], /whole number/],
    [['--port', '-1'], /whole number/],
    [['--port', '1.5'], /whole number/],
    [['--port', ''], /whole number/],
    [['--port', '65536'], /between 0 and 65535/],
    [['--port='], /whole number/],
    [['--max-size', '1e6'], /whole number/],
    [['--max-recipients', '0'], /between 1 and/],
    [['--idle-timeout', '86401'], /between 0 and 86400/],
    [['--max-clients', 'many'], /whole number/],
    [['--workers', '0'], /between 1 and 256/],
    [['--workers', '257'], /between 1 and 256/],
    [['--tls=yes'], /--tls takes no value/],
    [['--quiet=1'], /takes no value/],
    [['--auth', 'nocolon'], /USER:PASS/],
    [['--auth', ':pass'], /USER:PASS/],
    [['--tls-cert', 'c.pem'], /go together/],
    [['--tls-key', 'k.pem'], /go together/],
    [['--bare-newlines', 'strip'], /keep or reject/],
    [['--fail-rcpt', '250'], /between 400 and 599/],
    [['--fail-mail', '600'], /between 400 and 599/],
    [['--fail-data', 'x'], /whole number/],
    [['--fail-rate', '1.5'], /0 to 1/],
    [['--fail-rate', '-0.1'], /0 to 1/],
    [['--fail-rate', 'often'], /0 to 1/],
    [['--fail-rate', ''], /0 to 1/],
    [['--fail-rate='], /0 to 1/],
    [['--drop-at', 'quit'], /connect\|ehlo\|mail\|rcpt\|data\|body/],
    [['--throttle', '0'], /between 1 and/],
  ])('refuses %j with a UsageError', (args, message) => {
    expect(() => parseCatcherArgs(args)).toThrow(UsageError);
    expect(() => parseCatcherArgs(args)).toThrow(message);
  });

  it('each call starts from fresh defaults (no shared arrays)', () => {
    parseCatcherArgs(['--auth', 'a:b', '--fail-address', 'x@y']);
    const o = parseCatcherArgs([]);
    expect(o.auth).toEqual([]);
    expect(o.faults.addresses).toEqual([]);
  });
});
