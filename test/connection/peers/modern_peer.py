"""A peer of coproc's interop tests that speaks the Python 3.12+ authentication handshake
(gh-61460) itself, with only socket + struct + hmac, so that the 3.12+ form is tested on any
Python 3 (Debian bookworm's python3 is 3.11). It also speaks forms that a real Python does not
send by default: a challenge with another digest, an answer with another digest, and the
3.11 form.

    python3 modern_peer.py listen  FAMILY ADDRESS KEY [--digest D] [--answer-digest D] [--trace]
    python3 modern_peer.py connect FAMILY ADDRESS KEY [--digest D] [--answer-digest D] [--trace]

--digest: the digest named in the challenge this peer delivers (md5, sha256 (default),
sha384, sha3_256, sha3_384), or 'legacy' for Python 3.11's 20 random bytes without a prefix.
--answer-digest: answer a prefixed challenge with this digest instead of the one it names
(Python's verifier takes the digest from the answer; the MAC still covers the prefix).

FAMILY, ADDRESS, KEY, --trace and the output are mp_peer.py's (AuthenticationError: exit
status 3).
"""
import hmac
import os
import socket
import struct
import sys

CHALLENGE = b'#CHALLENGE#'
WELCOME = b'#WELCOME#'
FAILURE = b'#FAILURE#'
ALLOWED = {b'md5', b'sha256', b'sha384', b'sha3_256', b'sha3_384'}


class AuthenticationError(Exception):
    pass


class Conn:
    """Python's framing over a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.log = None  # --trace: a summary of every message, '>' sent, '<' received

    def send_bytes(self, data):
        if self.log is not None:
            self.log.append('>' + summary(data))
        n = len(data)
        if n > 0x7fffffff:
            header = struct.pack('!i', -1) + struct.pack('!Q', n)
        else:
            header = struct.pack('!i', n)
        if n <= 16384:
            self.sock.sendall(header + data)
        else:
            self.sock.sendall(header)
            self.sock.sendall(data)

    def _recv_exactly(self, n, started):
        chunks = []
        while n:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                if started or chunks:
                    raise OSError('got end of file during message')
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
            started = True
        return b''.join(chunks)

    def recv_bytes(self, maxlength=None):
        size, = struct.unpack('!i', self._recv_exactly(4, False))
        if size == -1:
            size, = struct.unpack('!Q', self._recv_exactly(8, True))
        if size < 0:
            raise OSError('bad header')
        if maxlength is not None and size > maxlength:
            raise OSError('bad message length')
        message = self._recv_exactly(size, True) if size else b''
        if self.log is not None:
            self.log.append('<' + summary(message))
        return message


def summary(message):
    """mp_peer.py's summary of a handshake message."""
    message = bytes(message)
    if message == WELCOME:
        return 'welcome'
    if message == FAILURE:
        return 'failure'
    kind = 'answer'
    if message.startswith(CHALLENGE):
        kind, message = 'challenge', message[len(CHALLENGE):]
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


def name_and_payload(message):
    if len(message) in (20, 16):
        return '', message
    if message.startswith(b'{'):
        curly = message.find(b'}', 1, 10)
        if curly > 0 and message[1:curly] in ALLOWED:
            return message[1:curly].decode('ascii'), message[curly + 1:]
    raise AuthenticationError('unsupported message length, missing digest prefix, '
                              'or unsupported digest: message=%r' % (message,))


def deliver(conn, key, digest):
    if digest == 'legacy':
        message = os.urandom(20)
    else:
        message = b'{%s}' % digest.encode('ascii') + os.urandom(40)
    conn.send_bytes(CHALLENGE + message)
    response = conn.recv_bytes(256)
    try:
        name, mac = name_and_payload(response)
        name = name or 'md5'
        expected = hmac.new(key, message, name).digest()
        if len(expected) != len(mac):
            raise AuthenticationError('expected %r of length %d got %d'
                                      % (name, len(expected), len(mac)))
        if not hmac.compare_digest(expected, mac):
            raise AuthenticationError('digest received was wrong')
    except AuthenticationError:
        conn.send_bytes(FAILURE)
        raise
    conn.send_bytes(WELCOME)


def answer(conn, key, answer_digest):
    message = conn.recv_bytes(256)
    if not message.startswith(CHALLENGE):
        raise AuthenticationError('Protocol error, expected challenge: message=%r' % (message,))
    message = message[len(CHALLENGE):]
    if len(message) < 20:
        raise AuthenticationError('challenge too short: %d bytes' % len(message))
    name, _ = name_and_payload(message)
    if not name:
        response = hmac.new(key, message, 'md5').digest()
    else:
        name = answer_digest or name
        response = b'{%s}' % name.encode('ascii') + hmac.new(key, message, name).digest()
    conn.send_bytes(response)
    if conn.recv_bytes(256) != WELCOME:
        raise AuthenticationError('digest sent was rejected')


def make_socket(family, address, listen):
    if family == 'tcp':
        host, port = address.rsplit(':', 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = '\0' + address if family == 'abstract' else address
    if not listen:
        sock.connect(target)
        return sock, None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(target)
    sock.listen(1)
    bound = sock.getsockname()
    if family == 'tcp':
        shown = '%s:%d' % bound[:2]
    elif family == 'abstract':
        shown = '@' + address
    else:
        shown = address
    return sock, shown


def main():
    args = sys.argv[1:]
    digest, answer_digest = 'sha256', None
    if '--digest' in args:
        i = args.index('--digest')
        digest = args[i + 1]
        del args[i:i + 2]
    if '--answer-digest' in args:
        i = args.index('--answer-digest')
        answer_digest = args[i + 1]
        del args[i:i + 2]
    trace = '--trace' in args
    if trace:
        args.remove('--trace')
    role, family, address, key = args
    key = None if key == '-' else b'' if key == 'empty' else bytes.fromhex(key)
    print('version %d.%d.%d (modern_peer)' % sys.version_info[:3], flush=True)
    sock, shown = make_socket(family, address, role == 'listen')
    if role == 'listen':
        print('address', shown, flush=True)
        listening = sock
        sock, _ = listening.accept()
        listening.close()
        if family == 'unix':
            os.unlink(address)
    conn = Conn(sock)
    if trace:
        conn.log = []

    def show_trace():
        if trace:
            print('handshake', ' '.join(conn.log) or '(none)', flush=True)
            conn.log = None
    try:
        if key is not None:
            if role == 'listen':
                deliver(conn, key, digest)
                answer(conn, key, answer_digest)
            else:
                answer(conn, key, answer_digest)
                deliver(conn, key, digest)
    except AuthenticationError as e:
        show_trace()
        print('AuthenticationError', e, flush=True)
        return 3
    show_trace()
    print('connected', flush=True)
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            break
        conn.send_bytes(message)
    sock.close()
    print('done', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
