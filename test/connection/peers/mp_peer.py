"""A peer of coproc's interop tests that uses the running interpreter's own
multiprocessing.connection (Listener / Client), whatever its version.

    python3 mp_peer.py listen  FAMILY ADDRESS KEY     # Listener(address, authkey=KEY)
    python3 mp_peer.py connect FAMILY ADDRESS KEY     # Client(address, authkey=KEY)

FAMILY: unix (ADDRESS is a path), abstract (ADDRESS is the name, without the leading NUL),
tcp (ADDRESS is host:port; port 0 for a listener picks one). KEY: '-' for no authkey,
'empty' for b'', otherwise hex.

It prints, one per line: "version X.Y.Z", then (listen) "address A" once listening, then
"connected" after the handshake, and echoes every message back until the end of the stream;
then "done". An AuthenticationError prints "AuthenticationError <text>" and exits with 3.
"""
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


def echo(conn):
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(message)


def main():
    role, family, address, key = sys.argv[1:5]
    key = parse_key(key)
    print('version %d.%d.%d' % sys.version_info[:3], flush=True)
    try:
        if role == 'listen':
            with Listener(parse_address(family, address), authkey=key) as listener:
                print('address', show(listener.address), flush=True)
                conn = listener.accept()
        else:
            conn = Client(parse_address(family, address), authkey=key)
    except AuthenticationError as e:
        print('AuthenticationError', e, flush=True)
        return 3
    print('connected', flush=True)
    with conn:
        echo(conn)
    print('done', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
