#!/usr/bin/python3
"""make bench: the cost of a routed request, on loopback, bounded in time.

Parts (BENCH_PARTS, comma separated, default all):

  wrk         throughput and latency, interleaved rounds of wrk against
              (a) plain proxy_pass, (b) split_clients, (c) this module at
              50% with counters, (d) the OpenResty way, (e) the module with
              every targeting rule, and the minimal shape's (a2), (b2),
              (c2); ratios of paired rounds (throughput, p99), medians;
              (f) is (c) with three arms 1:1:2 (issue 14), callgrind only
  callgrind   instructions per request on a single-process front nginx
              under valgrind --tool=callgrind, counted between marker
              requests around windows of 0, N and 2N requests:
              (Ir(2N) - Ir(0)) / 2N; with callgrind_annotate --inclusive
              figures per request for the module's functions, the
              allocator's and split_clients' hash
  propagation time from redis-cli HSET to the first request routed by the
              new value (needs canary_redis in the module)
  scale       1,000 rollouts, 100k and 1M users (needs canary_redis and
              canary_status)
  rollouts    nginx -t with 1,000 and 10,000 rollouts; start, reload,
              status and idle sync with 10,000 (bench/rollouts.py)
  fleet       16 nginx on one Redis: a change's propagation by each
              node's clock, Redis commands and CPU per node idle and
              during an auto ramp, the leader's extra (bench/fleet.py)

Request shapes (issue 15), none with Lua loaded:
  (i)   a, b, c, d, e: a uid cookie, User-Agent and X-Country headers
  (ii)  a2, b2, c2: one X-User header, "key $http_x_user $remote_addr;",
        a status location in the server; c2 without canary_redis, as a
        new user first writes it, c2r the same with it (callgrind only)
  (iii) a3, b3, c3: 50 flags on the X-User header in one proxy_set_header,
        50 split_clients blocks against 50 rollouts (callgrind only); a3
        sends a constant header of the same length
  (ii) with many configured: b2m50, c2m50, b2m500, c2m500: (b2) and (c2)
        with 50 or 500 split_clients blocks or rollouts in all, the
        request reading one; b2l is (b2) with the module loaded and
        unused (callgrind only)

Callgrind counts glibc's search of its bins in malloc, whose length
depends on what the process allocated before (loading a module is
enough to move it by 300 instructions a request); so each variant's
figure is also given without malloc, free and posix_memalign ("no
alloc"): the variants make the same allocations, counted apart.

Every front nginx has one worker; the backends are a second nginx; the
client keeps its connections alive and rotates user ids (u0 .. u9999).

Environment: BENCH_ROUNDS (11), BENCH_DURATION (2, seconds per wrk run),
BENCH_CONNS (32), BENCH_CG_N (2000), BENCH_CG_WARM (500), BENCH_CG_RUNS (1),
BENCH_QUICK=1 (short everything, for development), BENCH_VARIANTS (all
above), BENCH_WRK_VARIANTS (a,b,c,d,e,a2,b2,c2), BENCH_PIN (1: for wrk,
the front nginx on the last CPU, wrk and the backends on the others; 0:
no pinning), CANARY_MODULE, NGINX, BENCH_OUT (build/bench.json).

Prints a table and writes the JSON summary.
"""

import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
BUILD = os.path.join(TOP, 'build')
RUN = os.path.join(BUILD, 'bench-run')

NGINX = os.environ.pop('NGINX', '/usr/sbin/nginx')   # nginx reads $NGINX
MODULE = os.environ.get('CANARY_MODULE', os.path.join(
    BUILD, 'nginx', 'objs', 'ngx_http_canary_module.so'))
OUT = os.environ.get('BENCH_OUT', os.path.join(BUILD, 'bench.json'))

QUICK = os.environ.get('BENCH_QUICK') == '1'


def env_int(name, default, quick):
    return int(os.environ.get(name, quick if QUICK else default))


ROUNDS = env_int('BENCH_ROUNDS', 11, 2)
# wrk: the front nginx alone on the last CPU, wrk and the backends on the
# others, so that the front's cost per request sets the throughput and
# the scheduler's placement of three busy processes on few cores does not
# (BENCH_PIN=0: no pinning)
PIN = env_int('BENCH_PIN', 1, 1) == 1 and (os.cpu_count() or 1) >= 2
FRONT_CPUS = {(os.cpu_count() or 1) - 1}
OTHER_CPUS = set(range((os.cpu_count() or 1) - 1)) or FRONT_CPUS
DURATION = env_int('BENCH_DURATION', 2, 2)
CONNS = env_int('BENCH_CONNS', 32, 16)
CG_N = env_int('BENCH_CG_N', 2000, 500)
CG_WARM = env_int('BENCH_CG_WARM', 500, 200)
CG_RUNS = env_int('BENCH_CG_RUNS', 1, 1)
PARTS = os.environ.get('BENCH_PARTS',
                       'wrk,callgrind,propagation,scale,rollouts,fleet'
                       ).split(',')
VARIANTS = os.environ.get(
    'BENCH_VARIANTS',
    'a,b,c,d,e,f,a2,b2,c2,c2r,a3,b3,c3,b2l,b2m50,c2m50,b2m500,c2m500'
).split(',')
# wrk: the shapes whose throughput has targets; (iii) and c2r are counted
# in instructions only
WRK_VARIANTS = os.environ.get('BENCH_WRK_VARIANTS',
                              'a,b,c,d,e,a2,b2,c2').split(',')

NAMES = {
    'a': 'plain proxy_pass',
    'b': 'split_clients',
    'c': 'canary module 50%',
    'd': 'Lua (OpenResty way)',
    'e': 'canary, all rules',
    'f': 'canary, three arms 1:1:2',
    'a2': 'minimal: plain',
    'b2': 'minimal: split_clients',
    'c2': 'minimal: module 50%',
    'c2r': 'minimal: module, Redis',
    'a3': '50 flags: plain',
    'b3': '50 flags: split_clients',
    'c3': '50 flags: module',
    'b2l': 'minimal: split, module loaded',
    'b2m50': 'minimal, 50 splits',
    'c2m50': 'minimal, 50 rollouts',
    'b2m500': 'minimal, 500 splits',
    'c2m500': 'minimal, 500 rollouts',
}
CONF = {
    'a': 'a-plain.conf', 'b': 'b-split.conf', 'c': 'c-module.conf',
    'd': 'd-lua.conf', 'e': 'e-rules.conf', 'f': 'f-arms.conf',
    'a2': 'min-a-plain.conf', 'b2': 'min-b-split.conf',
    'c2': 'min-c-module.conf', 'c2r': 'min-c-module.conf',
    'a3': 'flags-a-plain.conf', 'b3': 'flags-b-split.conf',
    'c3': 'flags-c-module.conf',
    'b2l': 'min-b-split.conf',
    'b2m50': 'min-b-split.conf', 'c2m50': 'min-c-module.conf',
    'b2m500': 'min-b-split.conf', 'c2m500': 'min-c-module.conf',
}

# the request shapes: (i) the variants without a suffix get a uid cookie
# and the headers below, which are what (e)'s rules read, so that every
# rule is evaluated there; (ii) "2" and (iii) "3" get one X-User header,
# as a new user's smallest realistic request
HEADERS = {'X-Country': 'US', 'User-Agent': 'bench Mobile'}


def shape(v):
    return re.match(r'[a-z](\d?)', v).group(1) or '1'


def plain_of(v):
    """The plain proxy_pass variant of v's shape."""
    return 'a' + (shape(v) if shape(v) != '1' else '')


def request_headers(v):
    return HEADERS if shape(v) == '1' else {}


def request_id(v):
    return 'cookie' if shape(v) == '1' else 'X-User'


# (iii): 50 flags, f1 .. f50
NFLAGS = 50


def flags_subst():
    r = range(1, NFLAGS + 1)
    return {
        'SPLITS': '\n'.join(
            '    split_clients "f%d:${http_x_user}" $flag_f%d {\n'
            '        50%%  canary;\n        *    stable;\n    }\n'
            % (i, i) for i in r),
        'ROLLOUTS': '\n'.join(
            '    canary_rollout f%d {\n        key      $http_x_user;\n'
            '        stable   stable;\n        canary   canary;\n'
            '        percent  50;\n    }\n' % i for i in r),
        'FLAGS_SPLIT': ','.join('$flag_f%d' % i for i in r),
        'FLAGS_MODULE': ','.join('$canary_variant_f%d' % i for i in r),
        'FLAGS_CONST': ','.join('stable' for i in r),
    }


def many_subst(v):
    """(ii) with many configured: the blocks or rollouts beside the one
    the request reads, f1 .. f<n-1>, as in (iii); none for (b2), (c2)."""
    m = re.match(r'[bc]2m(\d+)$', v)
    if v == 'b2l':
        return {'MORE': '', 'LOAD': 'load_module  %s;' % MODULE}
    if not m:
        return {'MORE': ''}
    r = range(1, int(m.group(1)))
    hash_size = ('    variables_hash_max_size     8192;\n'
                 '    variables_hash_bucket_size  128;\n')
    if v[0] == 'b':
        return {'MORE': hash_size + '\n'.join(
            '    split_clients "f%d:${http_x_user}" $flag_f%d {\n'
            '        50%%  canary;\n        *    stable;\n    }\n'
            % (i, i) for i in r)}
    return {'MORE': hash_size + '\n'.join(
        '    canary_rollout f%d {\n        key      $http_x_user;\n'
        '        stable   stable;\n        canary   canary;\n'
        '        percent  50;\n    }\n' % i for i in r)}


procs = []
t_start = time.time()


def log(msg):
    sys.stderr.write('[bench %5.1fs] %s\n' % (time.time() - t_start, msg))
    sys.stderr.flush()


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def on_cpus(cpus):
    """A preexec_fn that keeps the child on cpus, when pinning."""
    if not PIN:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def spawn(args, **kw):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def stop(p, sig=signal.SIGQUIT, timeout=30, then=None):
    for s in (sig, then, signal.SIGKILL):
        if s is None or p.poll() is not None:
            continue
        p.send_signal(s)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    if p in procs:
        procs.remove(p)


def stop_all():
    for p in list(procs):
        stop(p, signal.SIGTERM, 10)


def has_directive(name):
    """Whether the built module knows a directive (features land over
    time: sync, status)."""
    try:
        with open(MODULE, 'rb') as f:
            return name.encode() + b'\0' in f.read()
    except OSError:
        return False


# --- configuration -------------------------------------------------------

class Env:
    """Ports and the running backends and Redis shared by every part."""

    def __init__(self):
        self.stable_port = free_port()
        self.canary_port = free_port()
        self.redis_port = free_port()
        self.sync = has_directive('canary_redis')
        self.status = has_directive('canary_status')


# Under callgrind, two marker requests bound what is counted: GET /zero
# reaches ngx_http_send_response (return with text), where callgrind
# zeroes its counters; GET /dump reaches ngx_http_named_location, where it
# dumps them.  Neither function is on the path of a proxied request.
MARKS = '''
        location = /zero {
            return  200 "zero\\n";
        }

        location = /dump {
            try_files  /nonexistent @dump;
        }

        location @dump {
            return  200 "dump\\n";
        }
'''


def render(path, env, prefix, port, single, extra=None):
    with open(path) as f:
        text = f.read()

    if single:
        main = ('master_process  off;\ndaemon          off;\n')
    else:
        main = ('worker_processes  1;\ndaemon            off;\n')

    main += ('pcre_jit          on;\n'
             'pid               %s/nginx.pid;\n'
             'error_log         %s/error.log notice;\n'
             'worker_rlimit_nofile  8192;\n\n'
             'events {\n    worker_connections  4096;\n}\n'
             % (prefix, prefix))

    with open(os.path.join(HERE, 'conf', 'common.inc')) as f:
        common = f.read()

    redis = ''
    if env.sync:
        # polled rarely under callgrind: the request path is measured
        redis = ('    canary_redis  127.0.0.1:%d;\n'
                 '    canary_sync_interval  %s;\n'
                 % (env.redis_port, '3600s' if single else '1s'))

    subst = {
        'MAIN': main,
        'COMMON': common.rstrip('\n'),
        'PORT': str(port),
        'PREFIX': prefix,
        'MODULE': MODULE,
        'STABLE_PORT': str(env.stable_port),
        'CANARY_PORT': str(env.canary_port),
        'REDIS_PORT': str(env.redis_port),
        'CANARY_REDIS': redis.rstrip('\n'),
        'LUA_INTERVAL': '3600' if single else '1',
        'MARKS': MARKS if single else '',
        'LOAD': '',
    }
    subst.update(extra or {})

    for _ in range(2):
        text = re.sub(r'%%(\w+)%%', lambda m: subst[m.group(1)], text)

    return text


def write_conf(name, text):
    prefix = os.path.join(RUN, name)
    os.makedirs(os.path.join(prefix, 'logs'), exist_ok=True)
    conf = os.path.join(prefix, 'nginx.conf')
    with open(conf, 'w') as f:
        f.write(text)
    return prefix, conf


def http_get(port, path='/', headers=None, timeout=2.0):
    req = 'GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n' % path
    for k, v in (headers or {}).items():
        req += '%s: %s\r\n' % (k, v)
    req += '\r\n'
    with socket.create_connection(('127.0.0.1', port), timeout) as s:
        s.sendall(req.encode())
        chunks = []
        while True:
            chunk = s.recv(262144)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b''.join(chunks).partition(b'\r\n\r\n')
    status = int(head.split(b' ', 2)[1])
    return status, body


def wait_ready(port, p, deadline=60.0, path='/'):
    end = time.time() + deadline
    while time.time() < end:
        if p is not None and p.poll() is not None:
            raise RuntimeError('process exited with %s' % p.returncode)
        try:
            http_get(port, path)
            return
        except (OSError, IndexError, ValueError):
            time.sleep(0.05)
    raise RuntimeError('port %d not ready in %.0fs' % (port, deadline))


def start_backends(env):
    prefix, conf = write_conf('backend', render(
        os.path.join(HERE, 'conf', 'backend.conf'), env,
        os.path.join(RUN, 'backend'), 0, False))
    p = spawn([NGINX, '-p', prefix, '-c', conf, '-e', 'stderr',
               '-g', 'daemon off;'], preexec_fn=on_cpus(OTHER_CPUS))
    wait_ready(env.stable_port, p)
    wait_ready(env.canary_port, p)
    return p


def start_redis(env):
    d = os.path.join(RUN, 'redis')
    os.makedirs(d, exist_ok=True)
    p = spawn(['redis-server', '--port', str(env.redis_port),
               '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
               '--dir', d, '--logfile', os.path.join(d, 'redis.log')],
              stdout=subprocess.DEVNULL)
    end = time.time() + 10
    while time.time() < end:
        if redis(env, 'PING') == 'PONG':
            break
        time.sleep(0.05)
    redis(env, 'HSET', 'canary:rollout:checkout', 'percent', '50')
    redis(env, 'HSET', 'canary:rollout:search', 'percent', '100')
    redis(env, 'HSET', 'canary:rollout:checkout_all', 'percent', '50',
          'percent:US', '50', 'percent:FR', '10')
    if env.sync:
        # (e): user sets that the bench's uids are not in, so that every
        # later rule is evaluated too
        fill_set(env, 'canary:rollout:checkout_all:canary_users', 'c',
                 10000)
        fill_set(env, 'canary:rollout:checkout_all:stable_users', 's',
                 10000)
    return p


def fill_set(env, key, tag, n, chunk=1000):
    """SADD n members <tag>0.. to key through redis-cli --pipe."""
    cmds = []
    for i in range(0, n, chunk):
        members = ['%s%d' % (tag, j) for j in range(i, min(n, i + chunk))]
        args = ['SADD', key] + members
        cmds.append('*%d\r\n' % len(args) + ''.join(
            '$%d\r\n%s\r\n' % (len(a), a) for a in args))
    subprocess.run(['redis-cli', '-p', str(env.redis_port), '--pipe'],
                   input=''.join(cmds).encode(), capture_output=True,
                   check=True)


def redis(env, *args):
    r = subprocess.run(['redis-cli', '-p', str(env.redis_port)]
                       + list(args), capture_output=True, text=True)
    return r.stdout.strip()


def start_front(env, v, single=False, valgrind=None, cpus=None):
    port = free_port()
    name = 'front-' + v + ('-cg' if single else '')
    prefix = os.path.join(RUN, name)
    extra = flags_subst() if shape(v) == '3' else many_subst(v)
    if v == 'c2' or v.startswith('c2m'):
        # the minimal shape as a new user first writes it: no canary_redis
        # (c2r is the same with it)
        extra['CANARY_REDIS'] = ''
    prefix, conf = write_conf(name, render(
        os.path.join(HERE, 'conf', CONF[v]), env, prefix, port, single,
        extra))
    cmd = [NGINX, '-p', prefix, '-c', conf, '-e', os.path.join(prefix,
                                                                'error.log')]
    if valgrind:
        cmd = valgrind + cmd
    p = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
              if valgrind else None, preexec_fn=on_cpus(cpus) if cpus
              else None)
    wait_ready(port, p, 120 if valgrind else 20)
    return p, port, prefix


# --- a keep-alive client for fixed request counts -------------------------

def share(c, n):
    """The canary share a Client saw: of its answers, or of the flags in
    them (iii)."""
    if c.flags:
        return c.flags_canary / float(c.flags)
    return c.canary / float(n)


class Client:
    """One keep-alive connection, sequential requests, rotating uids (in
    the uid cookie, or in an X-User header with ident='X-User')."""

    def __init__(self, port, headers=None, ident='cookie'):
        self.s = socket.create_connection(('127.0.0.1', port), 30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        extra = ''.join('%s: %s\r\n' % kv for kv in (headers or {}).items())
        if ident == 'cookie':
            idh = 'Cookie: uid=u%d\r\n'
        else:
            idh = ident + ': u%d\r\n'
        self.reqs = [('GET / HTTP/1.1\r\nHost: bench\r\n' + idh % u
                      + '%s\r\n' % extra).encode() for u in range(10000)]
        self.i = 0
        self.buf = b''
        self.canary = 0
        self.flags = 0          # flags in X-Flags answers
        self.flags_canary = 0   # of which "canary"

    def run(self, n):
        for _ in range(n):
            self.s.sendall(self.reqs[self.i])
            self.i = (self.i + 1) % len(self.reqs)
            self.read()

    def read(self):
        while b'\r\n\r\n' not in self.buf:
            self.recv()
        head, _, self.buf = self.buf.partition(b'\r\n\r\n')
        status = int(head.split(b' ', 2)[1])
        m = re.search(rb'(?i)\r\ncontent-length:\s*(\d+)', head)
        length = int(m.group(1)) if m else 0
        while len(self.buf) < length:
            self.recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        if status != 200:
            raise RuntimeError('status %d' % status)
        if body.startswith(b'canary'):
            self.canary += 1
        m = re.search(rb'(?i)\r\nx-flags:\s*([^\r]*)', head)
        if m:
            flags = m.group(1).split(b',')
            self.flags += len(flags)
            self.flags_canary += flags.count(b'canary')

    def recv(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise RuntimeError('connection closed')
        self.buf += chunk

    def close(self):
        self.s.close()


# --- part 1: wrk ----------------------------------------------------------

def worker_cpu(master):
    """CPU seconds (user + system) used so far by nginx's workers."""
    total = 0
    path = '/proc/%d/task/%d/children' % (master.pid, master.pid)
    with open(path) as f:
        for pid in f.read().split():
            with open('/proc/%s/stat' % pid) as st:
                fields = st.read().rsplit(')', 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / float(os.sysconf('SC_CLK_TCK'))


def wrk(port, v, master):
    args = ['wrk', '-t1', '-c%d' % CONNS, '-d%ds' % DURATION,
            '--timeout', '5s', '-s', os.path.join(HERE, 'rotate.lua'),
            'http://127.0.0.1:%d/' % port]
    args += ['--'] + ['%s:%s' % kv for kv in request_headers(v).items()]
    if request_id(v) != 'cookie':
        args.append('uid-header=' + request_id(v))
    cpu = worker_cpu(master)
    r = subprocess.run(args, capture_output=True, text=True,
                       timeout=DURATION + 30, preexec_fn=on_cpus(OTHER_CPUS))
    cpu = worker_cpu(master) - cpu
    m = re.search(r'^BENCH (\{.*\})$', r.stdout, re.M)
    if not m:
        raise RuntimeError('wrk: %s %s' % (r.stdout, r.stderr))
    res = json.loads(m.group(1))
    res['rps'] = res['requests'] / (res['duration_us'] / 1e6)
    res['cpu_us'] = cpu * 1e6 / max(res['requests'], 1)
    return res


def part_wrk(env, summary):
    variants = [v for v in VARIANTS if v in WRK_VARIANTS]
    fronts = {}
    for v in variants:
        p, port, prefix = start_front(env, v, cpus=FRONT_CPUS)
        fronts[v] = (p, port, prefix)

    # each one splits as configured
    shares = {}
    for v, (p, port, prefix) in fronts.items():
        c = Client(port, request_headers(v), request_id(v))
        c.run(400)
        c.close()
        shares[v] = share(c, 400)
    log('canary share of 400 requests: %s' % ', '.join(
        '%s %.2f' % kv for kv in shares.items()))

    rounds = {v: [] for v in variants}
    for r in range(ROUNDS):
        # interleaved, the order rotated each round
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            res = wrk(fronts[v][1], v, fronts[v][0])
            rounds[v].append(res)
            log('round %d %s: %.0f req/s p99 %.2f ms, front worker %.1f us '
                'CPU per request, errors %d'
                % (r + 1, v, res['rps'], res['p99_us'] / 1000.0,
                   res['cpu_us'], res['errors']))

    for v, (p, port, prefix) in fronts.items():
        stop(p)

    out = {'connections': CONNS, 'duration_s': DURATION, 'rounds': ROUNDS,
           'canary_share': shares, 'variants': {}, 'ratios': {},
           'p99_ratios': {}}
    for v in variants:
        rs = rounds[v]
        out['variants'][v] = {
            'name': NAMES[v],
            'rps_median': statistics.median(x['rps'] for x in rs),
            'p50_ms_median': statistics.median(x['p50_us'] for x in rs)
            / 1000.0,
            'p99_ms_median': statistics.median(x['p99_us'] for x in rs)
            / 1000.0,
            'front_cpu_us_median': statistics.median(x['cpu_us']
                                                     for x in rs),
            'errors': sum(x['errors'] for x in rs),
            'rps_rounds': [round(x['rps']) for x in rs],
        }

    def ratio(x, y):
        if x not in rounds or y not in rounds:
            return None
        return statistics.median(rounds[x][i]['rps'] / rounds[y][i]['rps']
                                 for i in range(ROUNDS))

    def interval(x, y):
        """A 90% bootstrap interval of the median of the paired ratios:
        how far another run of as many rounds may put it."""
        rs = [rounds[x][i]['rps'] / rounds[y][i]['rps']
              for i in range(ROUNDS)]
        rng = random.Random(15)
        meds = sorted(statistics.median(rng.choice(rs) for _ in rs)
                      for _ in range(2000))
        return [meds[100], meds[1899]]

    def p99_ratio(x, y):
        return statistics.median(rounds[x][i]['p99_us']
                                 / max(rounds[y][i]['p99_us'], 1e-9)
                                 for i in range(ROUNDS))

    def cpu_ratio(x, y):
        return statistics.median(rounds[x][i]['cpu_us']
                                 / max(rounds[y][i]['cpu_us'], 1e-9)
                                 for i in range(ROUNDS))

    # the front worker's CPU time per request: what its throughput would
    # be if it alone were the bottleneck, and much less disturbed by other
    # load on the machine than requests per second
    out['cpu_ratios'] = {}
    out['ratio_intervals'] = {}
    for x, y in (('b', 'a'), ('c', 'a'), ('d', 'a'), ('e', 'a'),
                 ('c', 'b'), ('c', 'd'), ('b2', 'a2'), ('c2', 'a2'),
                 ('c2', 'b2')):
        r = ratio(x, y)
        if r is not None:
            out['ratios']['%s/%s' % (x, y)] = r
            out['ratio_intervals']['%s/%s' % (x, y)] = interval(x, y)
            out['cpu_ratios']['%s/%s' % (x, y)] = cpu_ratio(x, y)
            out['p99_ratios']['%s/%s' % (x, y)] = p99_ratio(x, y)

    summary['wrk'] = out


# --- part 2: callgrind ----------------------------------------------------

def callgrind_dumps(out):
    """Totals of the dumps that --dump-before wrote, in order."""
    totals = []
    for f in sorted(os.listdir(RUN)):
        m = re.match(re.escape(os.path.basename(out)) + r'\.(\d+)$', f)
        if not m:
            continue
        with open(os.path.join(RUN, f)) as fh:
            text = fh.read()
        if 'dump-before' not in text.split('\nevents:', 1)[0]:
            continue
        t = re.search(r'^(?:totals|summary):\s+(\d+)', text, re.M)
        totals.append((int(m.group(1)), int(t.group(1)) if t else 0))
    return [t for _, t in sorted(totals)]


def settle(prefix, quiet=1.0, deadline=15.0):
    """Wait until the error log has not grown for `quiet` seconds: the
    sync worker's first rounds (and user set reads) are over."""
    path = os.path.join(prefix, 'error.log')
    end = time.time() + deadline
    last, since = -1, time.time()
    while time.time() < end:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        if size != last:
            last, since = size, time.time()
        elif time.time() - since >= quiet:
            return
        time.sleep(0.1)


def mark(port, path):
    st, body = http_get(port, path, timeout=60)
    if st != 200:
        raise RuntimeError('%s: status %d' % (path, st))


def callgrind_run(env, v):
    for attempt in range(3):
        try:
            return callgrind_once(env, v)
        except RuntimeError as e:
            log('callgrind %s: %s, again' % (v, e))
    raise RuntimeError('callgrind %s failed three times' % v)


def callgrind_once(env, v):
    """One nginx under callgrind: warm-up, then counted windows of 0, N
    and 2N requests on one keep-alive connection; instructions per
    request from the differences, so the markers' own cost cancels."""
    out = os.path.join(RUN, 'callgrind.%s.out' % v)
    for f in os.listdir(RUN):
        if f.startswith(os.path.basename(out)):
            os.unlink(os.path.join(RUN, f))
    vg = ['valgrind', '--tool=callgrind', '--callgrind-out-file=' + out,
          '--smc-check=all-non-file', '--trace-children=no',
          '--zero-before=ngx_http_send_response',
          '--dump-before=ngx_http_named_location',
          '--log-file=' + out + '.log']
    p, port, prefix = start_front(env, v, single=True, valgrind=vg)
    c = Client(port, request_headers(v), request_id(v))
    c.run(CG_WARM)
    settle(prefix)
    c.run(10)

    shares = []
    for n in (0, CG_N, 2 * CG_N):
        mark(port, '/zero')
        c.canary = c.flags = c.flags_canary = 0
        c.run(n)
        mark(port, '/dump')
        if n:
            shares.append(share(c, n))
    c.close()
    # nginx under valgrind has been seen to miss a SIGQUIT; SIGTERM also
    # exits in single-process mode
    stop(p, signal.SIGQUIT, 15, signal.SIGTERM)

    dumps = callgrind_dumps(out)
    if len(dumps) != 3:
        raise RuntimeError('%d dumps, not 3' % len(dumps))
    z, t1, t2 = dumps
    return {'window_0': z, 'window_n': t1, 'window_2n': t2,
            'per_request_n': (t1 - z) / float(CG_N),
            'per_request_2n': (t2 - z) / float(2 * CG_N),
            'canary_share': statistics.mean(shares),
            'inclusive': inclusive(out)}


# the functions whose inclusive cost per request is reported: the module's,
# split_clients' (its variable handler is static, so callgrind names it by
# address; its hash and the key's evaluation are named) and the allocator's
INCLUSIVE = re.compile(r'ngx_http_canary_|ngx_memalign|ngx_palloc\b'
                       r'|ngx_pcalloc|ngx_murmur_hash2|ngx_http_complex_value'
                       r'|_int_malloc|_int_free|ngx_rbtree_insert\b'
                       r'|ngx_rbtree_delete|ngx_pnalloc'
                       r'|^malloc$|^free$|^posix_memalign$')
# glibc's entry points: the allocator's instructions, counted apart
ALLOCATOR = ('malloc', 'free', 'posix_memalign')


def inclusive(out):
    """callgrind_annotate --inclusive=yes of the 2N window minus the 0
    window, per request, for the functions INCLUSIVE matches."""
    files = sorted((int(m.group(1)), f) for f in os.listdir(RUN)
                   for m in [re.match(re.escape(os.path.basename(out))
                                      + r'\.(\d+)$', f)] if m)
    if len(files) < 3:
        return {}

    def load(f):
        r = subprocess.run(['callgrind_annotate', '--inclusive=yes',
                            '--threshold=100', os.path.join(RUN, f)],
                           capture_output=True, text=True)
        d = {}
        for line in r.stdout.splitlines():
            m = re.match(r'^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+\S*:(\S+) ',
                         line)
            if m and INCLUSIVE.search(m.group(2)):
                d[m.group(2)] = int(m.group(1).replace(',', ''))
        return d

    w0, w2 = load(files[0][1]), load(files[2][1])
    d = {k: round((w2[k] - w0.get(k, 0)) / float(2 * CG_N), 1)
         for k in w2 if w2[k] - w0.get(k, 0) > 0}
    c0, c2 = calls(files[0][1]), calls(files[2][1])
    d['calls ngx_memalign'] = round((c2 - c0) / float(2 * CG_N), 3)
    return d


def calls(f, fn='ngx_memalign'):
    """How many times fn was called in one dump (its callers' counts in
    callgrind_annotate --tree=caller): a pool's blocks, the first among
    them, are each one call"""
    r = subprocess.run(['callgrind_annotate', '--tree=caller',
                        '--threshold=100', os.path.join(RUN, f)],
                       capture_output=True, text=True)
    n, callers = 0, []
    for line in r.stdout.splitlines():
        m = re.match(r'^\s*[\d,]+\s+(?:\([\s\d.%]+\)\s+)?<.*\(([\d,]+)x\)',
                     line)
        if m:
            callers.append(int(m.group(1).replace(',', '')))
            continue
        if re.match(r'^\s*[\d,]+\s+(?:\([\s\d.%]+\)\s+)?\*\s+\S*:'
                    + fn + r' ', line):
            n += sum(callers)
        callers = []
    return n


def part_callgrind(env, summary):
    out = {'warmup': CG_WARM, 'n': CG_N, 'variants': {}}
    for v in VARIANTS:
        runs = [callgrind_run(env, v) for _ in range(CG_RUNS)]
        per = [r['per_request_2n'] for r in runs]
        ir = statistics.median(per)
        alloc = sum(runs[0]['inclusive'].get(k, 0) for k in ALLOCATOR)
        out['variants'][v] = {'name': NAMES[v], 'ir_per_request': ir,
                              'ir_no_alloc': ir - alloc, 'runs': runs}
        log('callgrind %s: %.0f instructions per request (%.0f over N), '
            'canary share %.2f' % (v, ir, runs[0]['per_request_n'],
                                   runs[0]['canary_share']))

    ir = {v: out['variants'][v]['ir_per_request'] for v in out['variants']}
    out['added_over_plain'] = {v: ir[v] - ir[plain_of(v)] for v in ir
                               if plain_of(v) in ir}
    na = {v: out['variants'][v]['ir_no_alloc'] for v in out['variants']}
    for x, y in (('c', 'b'), ('c', 'd'), ('c2', 'b2'), ('c2r', 'b2'),
                 ('c3', 'b3'), ('f', 'c'), ('f', 'b'), ('c2', 'b2l'),
                 ('c2m50', 'b2m50'), ('c2m500', 'b2m500'), ('c2m500', 'c2'),
                 ('b2m500', 'b2')):
        if x in ir and y in ir:
            out['%s/%s' % (x, y)] = ir[x] / ir[y]
            out['%s-%s' % (x, y)] = ir[x] - ir[y]
            out['%s/%s no alloc' % (x, y)] = na[x] / na[y]
    if 'a3' in ir:
        # (iii): each flag's cost over the plain request with a constant
        # header of the same length
        out['per_flag'] = {v: (ir[v] - ir['a3']) / NFLAGS
                           for v in ('b3', 'c3') if v in ir}
    summary['callgrind'] = out


# --- Redis protocol, for timing (redis-cli's own start-up is ~ms) ---------

class Resp:
    """A minimal RESP client: pipelined commands, replies read later."""

    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port), 30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile('rb')
        self.pending = 0

    @staticmethod
    def encode(args):
        out = b'*%d\r\n' % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b'$%d\r\n%s\r\n' % (len(a), a)
        return out

    def send(self, *cmds):
        self.s.sendall(b''.join(self.encode(c) for c in cmds))
        self.pending += len(cmds)

    def reply(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t == b'$':
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if t == b'*':
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        if t == b':':
            return int(rest)
        if t == b'-':
            raise RuntimeError('redis: ' + rest.decode())
        return rest

    def drain(self):
        out = [self.reply() for _ in range(self.pending)]
        self.pending = 0
        return out

    def call(self, *args):
        self.send(args)
        return self.drain()[-1]

    def close(self):
        self.s.close()


def pct(xs, q):
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, -int(-q * len(xs) // 1) - 1))]


# --- part 3: propagation --------------------------------------------------

def route_once(c):
    """One request on a keep-alive Client; the variant that answered."""
    before = c.canary
    c.run(1)
    return 'canary' if c.canary > before else 'stable'


def part_propagation(env, summary):
    trials = {'notifications': 100 if not QUICK else 15,
              'publish': 100 if not QUICK else 15,
              'polling': 20 if not QUICK else 4}
    import random
    rnd = random.Random(1)

    p, port, prefix = start_front(env, 'c')
    c = Client(port, HEADERS)
    rd = Resp(env.redis_port)
    key = 'canary:rollout:checkout'

    out = {'sync_interval_s': 1, 'modes': {}}
    for mode, n in trials.items():
        rd.call('CONFIG', 'SET', 'notify-keyspace-events',
                'Kh$s' if mode == 'notifications' else '')
        # settle on percent 0 (every user stable)
        rd.call('HSET', key, 'percent', '0')
        rd.call('PUBLISH', 'canary:changed', 'checkout')
        end = time.time() + 5
        while route_once(c) != 'stable' and time.time() < end:
            time.sleep(0.01)

        times, sent, rtt = [], [], []
        value = 0
        for i in range(n):
            value = 100 - value
            want = 'canary' if value == 100 else 'stable'
            # the new value lands at a random point of the poll interval
            time.sleep(rnd.uniform(0.005, 0.03) if mode != 'polling'
                       else rnd.uniform(0, 1.0))
            cmds = [('HSET', key, 'percent', str(value))]
            if mode == 'publish':
                cmds.append(('PUBLISH', 'canary:changed', 'checkout'))
            t0 = time.perf_counter()
            rd.send(*cmds)
            while True:
                t1 = time.perf_counter()
                got = route_once(c)
                t = time.perf_counter() - t0
                rtt.append((t0 + t - t1) * 1000.0)
                if got == want or t > 5:
                    break
            rd.drain()
            times.append(t * 1000.0)
            # the deciding request was sent at t1: the new value was in
            # force between then and its answer
            sent.append((t1 - t0) * 1000.0)

        out['modes'][mode] = {
            'trials': n,
            'median_ms': statistics.median(times),
            'p99_ms': pct(times, 0.99),
            'max_ms': max(times),
            'all_ms': [round(t, 2) for t in times],
            'sent_median_ms': statistics.median(sent),
            'sent_p99_ms': pct(sent, 0.99),
            'request_rtt_p99_ms': pct(rtt, 0.99),
            'request_rtt_max_ms': max(rtt),
        }
        log('propagation %s: median %.2f ms, p99 %.2f ms over %d trials'
            % (mode, out['modes'][mode]['median_ms'],
               out['modes'][mode]['p99_ms'], n))

    rd.call('CONFIG', 'SET', 'notify-keyspace-events', '')
    rd.call('HSET', key, 'percent', '50')
    rd.close()
    c.close()
    stop(p)

    rows = ['propagation (HSET to the answer of the first request routed '
            'by the new value; sync interval 1 s; rtt: the probe\'s own '
            'requests; sent: HSET to the sending of that request):',
            '  %-14s %7s %10s %10s %10s %12s %14s' % (
                'mode', 'trials', 'median ms', 'p99 ms', 'max ms',
                'rtt p99 ms', 'sent p99 ms')]
    for mode, m in out['modes'].items():
        rows.append('  %-14s %7d %10.2f %10.2f %10.2f %12.2f %14.2f' % (
            mode, m['trials'], m['median_ms'], m['p99_ms'], m['max_ms'],
            m['request_rtt_p99_ms'], m['sent_p99_ms']))
    out['table'] = '\n'.join(rows)
    summary['propagation'] = out

    extra = summary.setdefault('targets_extra', [])
    for mode in ('notifications', 'publish'):
        v = out['modes'][mode]['p99_ms']
        extra.append({'target': 'propagation p99 ms, %s' % mode,
                      'bound': '< 20', 'value': round(v, 2),
                      'result': 'pass' if v < 20 else 'short'})


# --- part 4: scale --------------------------------------------------------

def status_json(port):
    try:
        st, body = http_get(port, '/canary?format=json', timeout=10)
        return json.loads(body) if st == 200 else None
    except (OSError, ValueError):
        return None


def timed_get(port, path, n):
    ts, size = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        st, body = http_get(port, path, timeout=30)
        ts.append((time.perf_counter() - t0) * 1000.0)
        size = len(body)
        if st != 200:
            raise RuntimeError('%s: status %d' % (path, st))
    return {'median_ms': statistics.median(ts), 'max_ms': max(ts),
            'bytes': size}


def fill_pipe(env, cmds):
    subprocess.run(['redis-cli', '-p', str(env.redis_port), '--pipe'],
                   input=b''.join(Resp.encode(c) for c in cmds),
                   capture_output=True, check=True)


def latency_probe(port, until, deadline):
    """Sequential keep-alive requests until until() is true; the latency
    of each, in ms."""
    c = Client(port, HEADERS)
    lat = []
    end = time.time() + deadline
    while time.time() < end:
        t0 = time.perf_counter()
        c.run(1)
        lat.append((time.perf_counter() - t0) * 1000.0)
        if until():
            break
    c.close()
    return lat


def users_file(state, n):
    """The size of the canary_users file beside the state file once it
    holds n members (None if it does not within 10 s)."""
    end = time.time() + 10
    while time.time() < end:
        for f in glob.glob(state + '.canary_users.*'):
            if f.endswith('.tmp'):
                continue
            with open(f, 'rb') as fh:
                data = fh.read()
            if data.endswith(b'\nend %d\n' % n):
                return len(data)
        time.sleep(0.05)
    return None


def part_scale(env, summary):
    nrollouts = 1000 if not QUICK else 100
    sizes = [100000, 1000000] if not QUICK else [100000]
    out = {'rollouts': nrollouts}

    rollouts = '\n'.join(
        '    canary_rollout r%d {\n        key      $arg_uid;\n'
        '        stable   stable;\n        canary   canary;\n'
        '        percent  0;\n    }\n' % i for i in range(nrollouts))
    port = free_port()
    prefix = os.path.join(RUN, 'front-scale')

    # a state file, as in production: the users file is written while the
    # set syncs, in a folder the worker user may write
    state_dir = os.path.join(RUN, 'scale-state')
    shutil.rmtree(state_dir, ignore_errors=True)
    os.makedirs(state_dir)
    os.chmod(state_dir, 0o777)
    state = os.path.join(state_dir, 'canary.state')

    prefix, conf = write_conf('front-scale', render(
        os.path.join(HERE, 'conf', 'scale.conf'), env, prefix, port, False,
        {'ROLLOUTS': rollouts, 'LAST': 'r%d' % (nrollouts - 1),
         'ZONE': '512m', 'STATE': state}))

    rd = Resp(env.redis_port)
    rd.call('DEL', 'canary:rollout:checkout:canary_users')
    rd.call('HSET', 'canary:rollout:checkout', 'percent', '0')
    fill_pipe(env, [('HSET', 'canary:rollout:r%d' % i, 'percent', '0')
                    for i in range(nrollouts)])

    t0 = time.time()
    p = spawn([NGINX, '-p', prefix, '-c', conf, '-e',
               os.path.join(prefix, 'error.log')])
    wait_ready(port, p, 60, '/v?uid=u1')

    def variants():
        st, body = http_get(port, '/v?uid=u1')
        return body.decode().split()

    # every rollout changed in Redis in one pipelined write, then a nudge
    t0 = time.perf_counter()
    rd.send(*([('HSET', 'canary:rollout:r%d' % i, 'percent', '100')
               for i in range(nrollouts)]
              + [('PUBLISH', 'canary:changed', 'r%d' % (nrollouts - 1))]))
    rd.drain()
    while variants() != ['canary', 'canary']:
        if time.perf_counter() - t0 > 30:
            raise RuntimeError('rollouts not synced in 30 s')
        time.sleep(0.001)
    out['rollouts_sync_ms'] = (time.perf_counter() - t0) * 1000.0
    log('scale: %d rollouts changed, applied in %.1f ms'
        % (nrollouts, out['rollouts_sync_ms']))

    # the sync worker's CPU for idle rounds (every rollout read each second)
    cpu0 = worker_cpu(p)
    time.sleep(5)
    out['idle_sync_cpu_ms_per_s'] = (worker_cpu(p) - cpu0) * 1000.0 / 5

    st = status_json(port)
    out['status_json'] = st is not None
    if st is not None:
        out['zone_used_bytes_rollouts'] = st.get('zone', {}).get('used')
        out['render_json'] = timed_get(port, '/canary?format=json', 10)
        out['render_prometheus'] = timed_get(
            port, '/canary?format=prometheus', 10)
        log('scale: status with %d rollouts: JSON %.1f ms (%d bytes), '
            'Prometheus %.1f ms (%d bytes)'
            % (nrollouts, out['render_json']['median_ms'],
               out['render_json']['bytes'],
               out['render_prometheus']['median_ms'],
               out['render_prometheus']['bytes']))

    # a baseline of the probe's own latency, no sync running
    base = latency_probe(port, lambda: False, 3)
    out['baseline_latency'] = {'p99_ms': pct(base, 0.99),
                               'over_20ms': sorted(round(x, 1) for x in base
                                                   if x > 20),
                               'max_ms': max(base), 'requests': len(base)}

    out['users'] = {}
    members = 'canary:rollout:checkout:canary_users'
    tmp = members + ':bench-tmp'
    for n in sizes:
        # n members built under another name, then renamed into place at
        # once, so that the module reads the whole set in one go
        rd.call('DEL', tmp)
        for i in range(0, n, 10000):
            fill_pipe(env, [('SADD', tmp)
                            + tuple('m%d' % j for j in
                                    range(i, min(n, i + 10000)))])
        # the last member must route to canary once the set is in force
        probe = Client(port, None)
        probe.reqs = [('GET / HTTP/1.1\r\nHost: bench\r\n'
                       'Cookie: uid=m%d\r\n\r\n' % (n - 1)).encode()]
        probe.i = 0

        def synced():
            return route_once(probe) == 'canary'

        t0 = time.perf_counter()
        rd.send(('RENAME', tmp, members),
                ('PUBLISH', 'canary:changed', 'checkout'))
        rd.drain()
        lat = latency_probe(port, synced, 120)
        took = (time.perf_counter() - t0) * 1000.0
        probe.close()
        st = status_json(port)
        ufile = users_file(state, n)
        res = {'sync_ms': took,
               'users_file_bytes': ufile,
               'latency_over_20ms': sorted(round(x, 1) for x in lat
                                           if x > 20),
               'latency_p99_ms': pct(lat, 0.99), 'latency_max_ms': max(lat),
               'requests_during_sync': len(lat),
               'zone_used_bytes': st.get('zone', {}).get('used')
               if st else None}
        out['users'][str(n)] = res
        log('scale: %d users synced in %.0f ms; %d requests meanwhile, '
            'p99 %.2f ms, max %.2f ms; zone used %s; users file %s bytes'
            % (n, took, len(lat), res['latency_p99_ms'],
               res['latency_max_ms'], res['zone_used_bytes'], ufile))

    rd.call('DEL', members)
    rd.close()
    stop(p)

    rows = ['scale:',
            '  %d rollouts: all changed, applied in %.1f ms; idle sync '
            'rounds cost %.1f ms CPU per second'
            % (nrollouts, out['rollouts_sync_ms'],
               out['idle_sync_cpu_ms_per_s'])]
    if out.get('render_json'):
        rows.append('  status render (%d rollouts): JSON %.1f ms '
                    '(%d bytes), Prometheus %.1f ms (%d bytes); zone used '
                    '%s bytes' % (
                        nrollouts, out['render_json']['median_ms'],
                        out['render_json']['bytes'],
                        out['render_prometheus']['median_ms'],
                        out['render_prometheus']['bytes'],
                        out.get('zone_used_bytes_rollouts')))
    else:
        rows.append('  status render: the status endpoint has no JSON yet')
    rows.append('  probe latency without sync: p99 %.2f ms, max %.2f ms'
                % (out['baseline_latency']['p99_ms'],
                   out['baseline_latency']['max_ms']))
    for n, r in out['users'].items():
        rows.append('  %8s canary_users: synced in %7.0f ms; requests '
                    'meanwhile p99 %.2f ms, max %.2f ms; zone used %s; '
                    'users file %s bytes'
                    % (n, r['sync_ms'], r['latency_p99_ms'],
                       r['latency_max_ms'], r['zone_used_bytes'],
                       r['users_file_bytes']))
    out['table'] = '\n'.join(rows)
    summary['scale'] = out

    big = out['users'].get('1000000') or out['users'][str(sizes[-1])]
    summary.setdefault('targets_extra', []).append({
        'target': 'max request latency ms while %s users sync'
                  % sizes[-1], 'bound': '<= 20',
        'value': round(big['latency_max_ms'], 2),
        'result': 'pass' if big['latency_max_ms'] <= 20 else 'short'})


# --- report ---------------------------------------------------------------

def memalign(summary, x, y):
    """ngx_memalign's calls per request (pool blocks, the pool's first
    among them) of x over y: more than 1 when x allocates another block"""
    cg = summary.get('callgrind', {}).get('variants', {})
    try:
        return (cg[x]['runs'][0]['inclusive']['calls ngx_memalign']
                / cg[y]['runs'][0]['inclusive']['calls ngx_memalign'])
    except (KeyError, ZeroDivisionError):
        return None


def targets(summary):
    t = []
    cg = summary.get('callgrind', {})
    w = summary.get('wrk', {}).get('ratios', {})

    def add(name, value, op, bound):
        if value is None:
            t.append({'target': name, 'bound': '%s %s' % (op, bound),
                      'value': None,
                      'result': 'not measured'})
            return
        ok = value <= bound if op == '<=' else value >= bound
        t.append({'target': name, 'bound': '%s %s' % (op, bound),
                  'value': round(value, 4),
                  'result': 'pass' if ok else 'short'})

    p99 = summary.get('wrk', {}).get('p99_ratios', {})
    pf = cg.get('per_flag', {})

    add('instructions (i): module / split_clients', cg.get('c/b'), '<=',
        1.00)
    add('instructions (ii): module / split_clients', cg.get('c2/b2'), '<=',
        1.00)
    add('instructions (iii): module / split_clients', cg.get('c3/b3'),
        '<=', 0.85)
    # (ii) with 1, 50 and 500 configured, the request reading one; also
    # without the allocator, and against split_clients with the module
    # loaded (the same heap)
    add('instructions (ii): module / split, module loaded', cg.get(
        'c2/b2l'), '<=', 1.00)
    for n in ('', '50', '500'):
        x, y = ('c2m' + n, 'b2m' + n) if n else ('c2', 'b2')
        if n:
            add('instructions (ii), %s configured: module / split' % n,
                cg.get('%s/%s' % (x, y)), '<=', 1.00)
        add('no alloc (ii), %s configured: module / split' % (n or '1'),
            cg.get('%s/%s no alloc' % (x, y)), '<=', 1.00)
    add('instructions (ii): module 500 configured / 1', cg.get('c2m500/c2'),
        '<=', 1.01)
    add('no alloc (ii): module 500 configured / 1', cg.get(
        'c2m500/c2 no alloc'), '<=', 1.01)
    add('ngx_memalign calls (ii): module 500 configured / 1', memalign(
        summary, 'c2m500', 'c2'), '<=', 1.00)
    add('instructions per flag (iii): module / split', (
        pf['c3'] / pf['b3'] if 'c3' in pf and 'b3' in pf else None),
        '<=', 1.00)
    add('instructions: module / Lua', cg.get('c/d'), '<=', 0.7)
    add('throughput (i): module / plain', w.get('c/a'), '>=', 0.95)
    add('throughput (i): module / split_clients', w.get('c/b'), '>=', 0.98)
    add('throughput (i): module / Lua', w.get('c/d'), '>=', 1.05)
    add('throughput (ii): module / plain', w.get('c2/a2'), '>=', 0.97)
    add('throughput (ii): module / split_clients', w.get('c2/b2'), '>=',
        0.99)
    add('p99 latency (ii): module / split_clients', p99.get('c2/b2'), '<=',
        1.05)
    # a 3-arm experiment (f), as (i) but with arms 1:1:2
    add('instructions: 3-arm experiment / split_clients', cg.get('f/b'),
        '<=', 1.00)
    t.extend(summary.get('targets_extra', []))
    summary['targets'] = t


def report(summary):
    lines = []
    w = summary.get('wrk')
    cg = summary.get('callgrind', {}).get('variants', {})
    if w or cg:
        lines.append('%-32s %8s %8s %7s %7s %8s %10s %8s %9s'
                     % ('variant', 'req/s', '/ plain', 'p50 ms', 'p99 ms',
                        'cpu us', 'instr/req', 'added', 'no alloc'))
        for v in VARIANTS:
            wv = w['variants'].get(v) if w else None
            r = w['ratios'].get('%s/%s' % (v, plain_of(v)),
                                1.0 if v == plain_of(v) else None) \
                if w and wv else None
            c = cg.get(v)
            added = summary['callgrind'].get('added_over_plain', {}).get(v) \
                if c else None
            lines.append('%-32s %8s %8s %7s %7s %8s %10s %8s %9s' % (
                '(%s) %s' % (v, NAMES[v]),
                '%.0f' % wv['rps_median'] if wv else '-',
                '%.3f' % r if r is not None else '-',
                '%.2f' % wv['p50_ms_median'] if wv else '-',
                '%.2f' % wv['p99_ms_median'] if wv else '-',
                '%.1f' % wv['front_cpu_us_median'] if wv else '-',
                '%.0f' % c['ir_per_request'] if c else '-',
                '%+.0f' % added if added is not None else '-',
                '%.0f' % c['ir_no_alloc'] if c else '-'))
        if w:
            lines.append('throughput ratios (median of paired rounds, '
                         '[90% bootstrap interval]): '
                         + ', '.join('%s %.3f [%.3f-%.3f]'
                                     % ((k, r) + tuple(
                                         w['ratio_intervals'][k]))
                                     for k, r in w['ratios'].items()))
            lines.append('front worker CPU per request, ratios: '
                         + ', '.join('%s %.3f' % kv
                                     for kv in w['cpu_ratios'].items()))
            lines.append('p99 latency ratios (median of paired rounds): '
                         + ', '.join('%s %.3f' % kv
                                     for kv in w['p99_ratios'].items()))
    cgs = summary.get('callgrind', {})
    if cgs.get('per_flag'):
        lines.append('instructions per flag (iii), over (a3): '
                     + ', '.join('%s %.1f' % kv
                                 for kv in cgs['per_flag'].items()))
    for v, c in cg.items():
        incl = c['runs'][0].get('inclusive')
        if incl and v[0] in 'bc':
            lines.append('(%s) inclusive per request: ' % v + ', '.join(
                '%s %.5g' % (k, n) for k, n in sorted(
                    incl.items(), key=lambda kv: -kv[1])))
    for p in ('propagation', 'scale', 'rollouts', 'fleet'):
        if p in summary:
            lines.append(summary[p].get('table', ''))
    lines.append('')
    lines.append('targets:')
    for t in summary['targets']:
        lines.append('  %-48s %-8s %-10s %s' % (
            t['target'], t['bound'],
            t['value'] if t['value'] is not None else '-', t['result']))
    return '\n'.join(lines)


def check_logs():
    bad = []
    for root, _, files in os.walk(RUN):
        for f in files:
            if f.endswith('error.log'):
                with open(os.path.join(root, f), errors='replace') as fh:
                    for line in fh:
                        if re.search(r'\[(alert|emerg|crit)\]', line):
                            bad.append('%s: %s' % (f, line.strip()))
    return bad


def main():
    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(RUN)

    env = Env()
    summary = {
        'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'host': {'cpus': os.cpu_count(),
                 'loadavg_start': os.getloadavg()[0],
                 'wrk_front_cpus': sorted(FRONT_CPUS) if PIN else None},
        'nginx': subprocess.run([NGINX, '-v'], capture_output=True,
                                text=True).stderr.strip(),
        'sync': env.sync,
    }

    try:
        start_redis(env)
        start_backends(env)

        if 'wrk' in PARTS:
            part_wrk(env, summary)
        if 'callgrind' in PARTS:
            part_callgrind(env, summary)
        if 'propagation' in PARTS:
            if env.sync:
                part_propagation(env, summary)
            else:
                log('propagation: skipped, the module has no canary_redis')
        if 'scale' in PARTS:
            if env.sync:
                part_scale(env, summary)
            else:
                log('scale: skipped, the module has no canary_redis')
        if 'rollouts' in PARTS:
            import rollouts
            rollouts.part(sys.modules[__name__], env, summary)
        if 'fleet' in PARTS:
            if env.sync:
                import fleet
                fleet.part(sys.modules[__name__], env, summary)
            else:
                log('fleet: skipped, the module has no canary_redis')
    finally:
        stop_all()

    summary['host']['loadavg_end'] = os.getloadavg()[0]
    summary['elapsed_s'] = round(time.time() - t_start, 1)
    targets(summary)
    bad = check_logs()
    summary['log_problems'] = bad

    text = report(summary)
    print(text)
    if bad:
        print('error.log problems:\n  ' + '\n  '.join(bad[:10]))
    print('elapsed %.0f s; JSON: %s' % (summary['elapsed_s'], OUT))

    with open(OUT, 'w') as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write('\n')


if __name__ == '__main__':
    main()
