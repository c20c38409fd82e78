#!/usr/bin/env bash
# Records the real-client transcripts in spec/fixtures/transcripts/ (see lib/record/FORMAT.md).
#
# How the fixtures were made: this script starts the catcher from the build with
#   --host 127.0.0.1 --port 0 --maildir TMP --record TMP --tls --auth user:pass --hostname fixtures.test
# points one real SMTP client at it per fixture, and copies each session's transcript to
# spec/fixtures/transcripts/<client>-<scenario>.txt. spec/record/fixtures-replay.spec.ts then replays
# every one of them against a fresh catcher and expects the same replies.
#
# Running it again overwrites the same files (times, ports, message ids, TLS ciphers and Date headers
# change; nothing else should). Only 127.0.0.1 is used; the catcher is stopped on exit.
#
# Needs:
#   - node 20 and a build (`npm run build`; done here if dist/ is missing), nodemailer (a devDependency);
#   - python3 (smtplib, standard library);
#   - curl (built with SMTP support, as Debian's is);
#   - swaks, which is NOT installed by default: `apt-get install -y swaks` (Debian bookworm has swaks
#     20201014.0; its STARTTLS uses Net::SSLeay, from libnet-ssleay-perl, which apt pulls in).
# Replaying the fixtures (the tests) needs none of the clients: the replay plays the client side itself.
#
# Usage: scripts/record-fixtures.sh [OUT_DIR]   (default: spec/fixtures/transcripts)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/spec/fixtures/transcripts}
CLIENT_HELO=client.fixtures.test

missing=()
for tool in node python3 curl swaks; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]} > 0)); then
  echo "record-fixtures: missing: ${missing[*]} (swaks: apt-get install -y swaks)" >&2
  exit 2
fi

cd "$ROOT"
[[ -f dist/lib/catcher/cli.js ]] || npm run build --silent

WORK=$(mktemp -d)
CATCHER_PID=
cleanup() {
  if [[ -n "$CATCHER_PID" ]]; then
    kill "$CATCHER_PID" 2>/dev/null || true
    wait "$CATCHER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

node dist/lib/catcher/cli.js --host 127.0.0.1 --port 0 --maildir "$WORK/mail" --record "$WORK/rec" \
  --tls --auth user:pass --hostname fixtures.test --quiet >"$WORK/catcher.out" 2>&1 &
CATCHER_PID=$!

PORT=
for _ in $(seq 100); do
  PORT=$(sed -n 's#^listening on smtp://127\.0\.0\.1:\([0-9][0-9]*\).*#\1#p' "$WORK/catcher.out")
  [[ -n "$PORT" ]] && break
  kill -0 "$CATCHER_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$PORT" ]]; then
  echo "record-fixtures: the catcher did not start:" >&2
  cat "$WORK/catcher.out" >&2
  exit 1
fi
echo "catcher on 127.0.0.1:$PORT"
mkdir -p "$OUT" "$WORK/rec"

# record NAME COMMAND...: runs one client session and copies its transcript to $OUT/NAME.txt.
record() {
  local name=$1
  shift
  ls "$WORK/rec" >"$WORK/before"
  # bash -c so that COMMAND may be a function (exported below); stdin (a heredoc) passes through.
  if ! timeout 60 bash -c '"$@"' record "$@" >"$WORK/client.log" 2>&1; then
    echo "record-fixtures: $name: the client failed:" >&2
    cat "$WORK/client.log" >&2
    exit 1
  fi
  local file=
  for _ in $(seq 100); do
    file=$(ls "$WORK/rec" | grep -vxF -f "$WORK/before" || true)
    # The session is over once its transcript ends with the E record.
    if [[ -n "$file" && $(wc -l <<<"$file") -eq 1 ]] && tail -n 1 "$WORK/rec/$file" | grep -qE '^[0-9]+ E$'; then
      break
    fi
    file=
    sleep 0.1
  done
  if [[ -z "$file" ]]; then
    echo "record-fixtures: $name: no complete transcript" >&2
    exit 1
  fi
  cp "$WORK/rec/$file" "$OUT/$name.txt"
  echo "recorded $name.txt"
}

# ---------------------------------------------------------------- nodemailer (npm, devDependency)

nodemailer_send() {
  # $1: plain | PLAIN | LOGIN
  node - "$PORT" "$1" "$CLIENT_HELO" <<'EOF'
const nodemailer = require('nodemailer');
const [port, mode, name] = process.argv.slice(2);
const secured = mode !== 'plain';
const transport = nodemailer.createTransport({
  host: '127.0.0.1',
  port: Number(port),
  name,
  secure: false,
  ignoreTLS: !secured,
  requireTLS: secured,
  tls: { rejectUnauthorized: false },
  ...(secured ? { auth: { user: 'user', pass: 'pass' }, authMethod: mode } : {}),
});
transport
  .sendMail({
    from: 'Alice <alice@example.com>',
    to: 'Bob <bob@example.com>',
    subject: `nodemailer ${mode}`,
    text: `Hello from nodemailer ${require('nodemailer/package.json').version} (${mode}).\n.a line with a leading dot\n`,
  })
  .then((info) => {
    console.log(info.response);
    transport.close();
  })
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
EOF
}
export -f nodemailer_send
export PORT CLIENT_HELO

record nodemailer-plain nodemailer_send plain
record nodemailer-starttls-auth-plain nodemailer_send PLAIN
record nodemailer-starttls-auth-login nodemailer_send LOGIN

# ---------------------------------------------------------------- python3 smtplib

# Plain session: SMTPUTF8 + 8BITMIME, UTF-8 address and body, lines smtplib has to dot-stuff.
record smtplib-plain python3 - "$PORT" "$CLIENT_HELO" <<'EOF'
import smtplib, sys
port, helo = int(sys.argv[1]), sys.argv[2]
body = (
    "From: J\u00f6rg <j\u00f6rg@example.com>\r\n"
    "To: bob@example.com\r\n"
    "Subject: Gr\u00fc\u00dfe aus smtplib\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Caf\u00e9, na\u00efve, \u65e5\u672c\u8a9e.\r\n"
    ".a line with a leading dot\r\n"
    "..two leading dots\r\n"
    ".\r\n"
    "the line above was a lone dot\r\n"
).encode("utf-8")
with smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=20) as s:
    s.sendmail("j\u00f6rg@example.com", ["bob@example.com"], body, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
EOF

# STARTTLS, then AUTH CRAM-MD5 forced (smtplib would pick it anyway, but say so).
record smtplib-cram-md5 python3 - "$PORT" "$CLIENT_HELO" <<'EOF'
import smtplib, ssl, sys
port, helo = int(sys.argv[1]), sys.argv[2]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=20) as s:
    s.ehlo()
    s.starttls(context=context)
    s.ehlo()
    s.user, s.password = "user", "pass"
    s.auth("CRAM-MD5", s.auth_cram_md5)
    s.sendmail(
        "alice@example.com",
        ["bob@example.com", "carol@example.com"],
        b"From: alice@example.com\r\nTo: bob@example.com, carol@example.com\r\nSubject: smtplib CRAM-MD5\r\n\r\nHello over TLS.\r\n",
    )
EOF

# ---------------------------------------------------------------- swaks

# swaks writes a Message-Id with this machine's name: give one so the fixture does not carry it.
record swaks-plain swaks --server 127.0.0.1 --port "$PORT" --helo "$CLIENT_HELO" \
  --from alice@example.com --to bob@example.com \
  --header 'Message-Id: <swaks-plain@client.fixtures.test>' --header 'Subject: swaks plain'
record swaks-starttls-auth-login swaks --server 127.0.0.1 --port "$PORT" --helo "$CLIENT_HELO" \
  --tls --auth LOGIN --auth-user user --auth-password pass \
  --from alice@example.com --to bob@example.com \
  --header 'Message-Id: <swaks-login@client.fixtures.test>' --header 'Subject: swaks STARTTLS + AUTH LOGIN'

# ---------------------------------------------------------------- curl

printf 'From: alice@example.com\r\nTo: bob@example.com\r\nSubject: curl plain\r\n\r\nHello from curl.\r\n.a line with a leading dot\r\n' \
  >"$WORK/curl-message.txt"
# The URL's path is the EHLO name.
record curl-plain curl --silent --show-error "smtp://127.0.0.1:$PORT/$CLIENT_HELO" \
  --mail-from alice@example.com --mail-rcpt bob@example.com -T "$WORK/curl-message.txt"
record curl-starttls-auth-plain curl --silent --show-error "smtp://127.0.0.1:$PORT/$CLIENT_HELO" \
  --ssl-reqd --insecure --user user:pass --login-options AUTH=PLAIN \
  --mail-from alice@example.com --mail-rcpt bob@example.com -T "$WORK/curl-message.txt"

# ---------------------------------------------------------------- checks

# No AUTH secret may reach a fixture: user\0user\0pass, user, pass in base64.
if grep -lE 'dXNlcgB1c2VyAHBhc3M=|AHVzZXIAcGFzcw|dXNlcg==|cGFzcw==' "$OUT"/*.txt; then
  echo "record-fixtures: the files above contain AUTH secrets" >&2
  exit 1
fi
echo "done: $OUT"
