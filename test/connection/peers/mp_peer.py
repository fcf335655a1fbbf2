"""A peer of coproc's interop tests that uses the running interpreter's own
multiprocessing.connection (Listener / Client), whatever its version.

    python3 mp_peer.py listen  FAMILY ADDRESS KEY [--trace] [--json]   # Listener(address, authkey=KEY)
    python3 mp_peer.py connect FAMILY ADDRESS KEY [--trace] [--json]   # Client(address, authkey=KEY)
    python3 mp_peer.py probe                                           # prints the version line only

FAMILY: unix (ADDRESS is a path), abstract (ADDRESS is the name, without the leading NUL),
tcp (ADDRESS is host:port; port 0 for a listener picks one). KEY: '-' for no authkey,
'empty' for b'', otherwise hex.

It prints, one per line: "version X.Y.Z", then (listen) "address A" once listening, then
"connected" after the handshake, and echoes every message back until the end of the stream;
then "done". An AuthenticationError prints "AuthenticationError <text>" and exits with 3; an
other end that goes away while the peer writes, "gone <error>" and exit status 4.

--trace: before "connected" (or the AuthenticationError line), one line "handshake M..." with
every handshake message in order, ">" sent and "<" received, each summarised as
challenge:NAME:N (a "{NAME}" challenge with N random bytes after the prefix), challenge:raw:N
(3.11's unprefixed form), answer:NAME:N (a "{NAME}" answer and its N-byte MAC), answer:raw:N,
welcome or failure. It shows which form of the handshake this interpreter spoke.

--json: typed messages. Right after "connected" the peer sends DOCUMENT (below, as
json.dumps makes it); then, for every message, it prints "json " + json.dumps(the message
read with json.loads, sort_keys=True) and sends json.dumps of it back (Python's own text).
"""
import json
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener


def parse_address(family, text):
    if family == 'unix':
        return text
    if family == 'abstract':
        return '\0' + text
    host, port = text.rsplit(':', 1)
    return (host, int(port))


def show(address):
    if isinstance(address, tuple):
        return '%s:%d' % address[:2]
    if isinstance(address, bytes):
        address = address.decode()
    if address.startswith('\0'):
        return '@' + address[1:]
    return address


def parse_key(text):
    if text == '-':
        return None
    if text == 'empty':
        return b''
    return bytes.fromhex(text)


def summary(message):
    message = bytes(message)
    if message == b'#WELCOME#':
        return 'welcome'
    if message == b'#FAILURE#':
        return 'failure'
    kind = 'answer'
    if message.startswith(b'#CHALLENGE#'):
        kind, message = 'challenge', message[len(b'#CHALLENGE#'):]
    # Python's own rule (3.12's _get_digest_name_and_payload): the legacy lengths first, so
    # 20 random bytes that happen to start with '{' are still the 3.11 form.
    if len(message) in (20, 16):
        return '%s:raw:%d' % (kind, len(message))
    if message.startswith(b'{'):
        curly = message.find(b'}', 1, 10)
        if curly > 0:
            return '%s:%s:%d' % (kind, message[1:curly].decode('ascii', 'replace'),
                                 len(message) - curly - 1)
    return '%s:raw:%d' % (kind, len(message))


def trace_handshake(log):
    """Records what the Connection class sends and receives until the returned function is
    called (Listener.accept and Client run the handshake through these two methods)."""
    from multiprocessing import connection
    cls = connection.Connection
    send_bytes, recv_bytes = cls.send_bytes, cls.recv_bytes

    def traced_send(self, buf, offset=0, size=None):
        log.append('>' + summary(buf))
        return send_bytes(self, buf, offset, size)

    def traced_recv(self, maxlength=None):
        message = recv_bytes(self, maxlength)
        log.append('<' + summary(message))
        return message

    cls.send_bytes, cls.recv_bytes = traced_send, traced_recv

    def restore():
        cls.send_bytes, cls.recv_bytes = send_bytes, recv_bytes
        print('handshake', ' '.join(log) or '(none)', flush=True)
    return restore


# What a Python peer sends first in --json mode (coproc reads it with recv<T>).
DOCUMENT = {
    'name': 'python',
    'version': list(sys.version_info[:3]),
    'ratio': 0.1,
    'values': [1.5, -2.0, 1e300, 5e-324, 1 / 3],
    'groups': {'a': [1, 2], 'b': []},
    'text': 'h\u00e9llo \u2603 \U0001F600 "q" \\ \n',
    'missing': None,
    'flag': True,
    'big': 2 ** 64 - 1,
    'count': -2 ** 63,
}


def json_loop(conn):
    conn.send_bytes(json.dumps(DOCUMENT).encode('ascii'))
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        value = json.loads(message.decode('utf-8'))
        print('json', json.dumps(value, sort_keys=True), flush=True)
        conn.send_bytes(json.dumps(value).encode('ascii'))


def echo(conn):
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(message)


def main():
    print('version %d.%d.%d' % sys.version_info[:3], flush=True)
    if sys.argv[1] == 'probe':
        return 0
    role, family, address, key = sys.argv[1:5]
    options = sys.argv[5:]
    key = parse_key(key)
    restore = trace_handshake([]) if '--trace' in options else (lambda: None)
    try:
        if role == 'listen':
            listener = Listener(parse_address(family, address), authkey=key)
            try:
                print('address', show(listener.address), flush=True)
                conn = listener.accept()
            finally:
                try:
                    listener.close()
                except ValueError:
                    pass  # Python 3.6 unlinks an abstract name: "embedded null byte"
        else:
            conn = Client(parse_address(family, address), authkey=key)
    except AuthenticationError as e:
        restore()
        print('AuthenticationError', e, flush=True)
        return 3
    restore()
    print('connected', flush=True)
    with conn:
        try:
            if '--json' in options:
                json_loop(conn)
            else:
                echo(conn)
        except (BrokenPipeError, ConnectionResetError) as e:
            print('gone', type(e).__name__, flush=True)  # the other end closed first
            return 4
    print('done', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
