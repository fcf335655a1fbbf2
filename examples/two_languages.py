"""The Python half of examples/two_languages.cpp: a worker that speaks to a C++ coproc
listener with nothing but Python's own multiprocessing.connection.

    python3 two_languages.py ADDRESS        ADDRESS: a path, or @name for an abstract socket

The authkey arrives in the environment (COPROC_EXAMPLE_KEY, hex), never on the command line.
Messages are JSON text: json.loads(conn.recv_bytes()) reads what the C++ side's
conn.send(job) wrote, and conn.send_bytes(json.dumps(...).encode()) is what its
conn.recv<reply>() reads. (conn.send()/conn.recv() would pickle, which C++ cannot read.)
"""
import json
import os
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client

address = sys.argv[1]
if address.startswith('@'):
    address = '\0' + address[1:]
key = bytes.fromhex(os.environ['COPROC_EXAMPLE_KEY'])

try:
    conn = Client(address, authkey=key)
except AuthenticationError as e:
    print(f'python: the C++ listener refused my key: {e}', flush=True)
    sys.exit(3)

with conn:
    while True:
        try:
            job = json.loads(conn.recv_bytes())
        except EOFError:
            break
        words = job['text'].split()
        conn.send_bytes(json.dumps({
            'id': job['id'],
            'words': len(words),
            'longest': max(words, key=len) if words else None,
            'python': sys.version.split()[0],
        }).encode())
print('python: done', flush=True)
