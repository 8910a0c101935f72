"""make bench, part "rollouts": many rollouts configured.

nginx -t with 1,000 and 10,000 rollouts (three runs each, the median and
every run), then one nginx (a worker, canary_redis, a state file) with
10,000: its start until the first answer, the zone's use, the status
page in JSON and Prometheus (time, bytes), the sync worker's CPU while
idle (every rollout read each second), and a reload until a new worker
answers and the old one is gone.

bench.py calls part(B, env, summary) with itself as B.
"""

import os
import shutil
import signal
import statistics
import subprocess
import time


def rollouts_text(n):
    return '\n'.join(
        '    canary_rollout r%d {\n        key      $arg_uid;\n'
        '        stable   stable;\n        canary   canary;\n'
        '        percent  0;\n    }\n' % i for i in range(n))


def conf_for(B, env, n, name):
    port = B.free_port()
    prefix = os.path.join(B.RUN, name)
    state_dir = os.path.join(B.RUN, name + '-state')
    shutil.rmtree(state_dir, ignore_errors=True)
    os.makedirs(state_dir)
    os.chmod(state_dir, 0o777)
    prefix, conf = B.write_conf(name, B.render(
        os.path.join(B.HERE, 'conf', 'scale.conf'), env, prefix, port, False,
        {'ROLLOUTS': rollouts_text(n), 'LAST': 'r%d' % (n - 1),
         'ZONE': '64m', 'STATE': os.path.join(state_dir, 'canary.state')}))
    return port, prefix, conf


def nginx_t(B, prefix, conf, runs=3):
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run([B.NGINX, '-t', '-q', '-p', prefix, '-c', conf,
                            '-e', os.path.join(prefix, 'error.log')],
                           capture_output=True, text=True)
        ts.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise RuntimeError('nginx -t: %s' % r.stderr.strip())
    return ts


def children(p):
    with open('/proc/%d/task/%d/children' % (p.pid, p.pid)) as f:
        return set(f.read().split())


def part(B, env, summary):
    sizes = (100, 1000) if B.QUICK else (1000, 10000)
    out = {'sizes': list(sizes), 'nginx_t_s': {}}

    for n in sizes:
        port, prefix, conf = conf_for(B, env, n, 'front-rollouts-%d' % n)
        ts = nginx_t(B, prefix, conf)
        out['nginx_t_s'][n] = {'median': statistics.median(ts),
                               'runs': [round(t, 3) for t in ts]}
        B.log('rollouts: nginx -t with %d rollouts: %.3f s (%s)'
              % (n, statistics.median(ts),
                 ', '.join('%.3f' % t for t in ts)))

    lo, hi = sizes
    out['nginx_t_ratio'] = (out['nginx_t_s'][hi]['median']
                            / out['nginx_t_s'][lo]['median'])

    # one nginx with the larger number: start, status, idle sync, reload
    t0 = time.perf_counter()
    p = B.spawn([B.NGINX, '-p', prefix, '-c', conf, '-e',
                 os.path.join(prefix, 'error.log')])
    B.wait_ready(port, p, 120, '/v?uid=u1')
    out['start_s'] = time.perf_counter() - t0

    # the sync worker's first rounds
    B.settle(prefix, quiet=2.0, deadline=60)

    st = B.status_json(port)
    if st is not None:
        out['zone'] = st.get('zone', {})
    if env.status:
        out['render_json'] = B.timed_get(port, '/canary?format=json', 5)
        out['render_prometheus'] = B.timed_get(
            port, '/canary?format=prometheus', 5)

    cpu0 = B.worker_cpu(p)
    time.sleep(5)
    out['idle_worker_cpu_ms_per_s'] = (B.worker_cpu(p) - cpu0) * 1000.0 / 5

    old = children(p)
    t0 = time.perf_counter()
    p.send_signal(signal.SIGHUP)
    end = time.time() + 120
    while time.time() < end:
        now = children(p)
        if now and not (now & old):
            try:
                st, _ = B.http_get(port, '/v?uid=u1', timeout=5)
            except OSError:
                st = 0
            if st == 200:
                break
        time.sleep(0.01)
    else:
        raise RuntimeError('reload with %d rollouts: no new worker' % hi)
    out['reload_s'] = time.perf_counter() - t0
    st = B.status_json(port)
    if st is not None:
        out['zone_after_reload'] = st.get('zone', {})
    B.stop(p)

    rows = ['rollouts (nginx -t: median of 3 runs; then one nginx, one '
            'worker, canary_redis, %d rollouts):' % hi,
            '  nginx -t: %d rollouts %.3f s, %d rollouts %.3f s (x%.1f)'
            % (lo, out['nginx_t_s'][lo]['median'], hi,
               out['nginx_t_s'][hi]['median'], out['nginx_t_ratio']),
            '  start to first answer %.2f s; reload to the new worker '
            'alone %.2f s' % (out['start_s'], out['reload_s']),
            '  zone %s; after reload %s' % (out.get('zone'),
                                           out.get('zone_after_reload')),
            '  idle: the worker\'s CPU %.1f ms/s'
            % out['idle_worker_cpu_ms_per_s']]
    for f in ('json', 'prometheus'):
        r = out.get('render_' + f)
        if r:
            rows.append('  status %s: %.1f ms (max %.1f), %d bytes'
                        % (f, r['median_ms'], r['max_ms'], r['bytes']))
    out['table'] = '\n'.join(rows)
    summary['rollouts'] = out

    extra = summary.setdefault('targets_extra', [])
    v = out['nginx_t_s'][hi]['median']
    extra.append({'target': 'nginx -t, %d rollouts, s' % hi,
                  'bound': '< 2', 'value': round(v, 3),
                  'result': 'pass' if v < 2 else 'short'})
    v = out['nginx_t_ratio']
    extra.append({'target': 'nginx -t, %d / %d rollouts' % (hi, lo),
                  'bound': '<= 12', 'value': round(v, 2),
                  'result': 'pass' if v <= 12 else 'short'})
