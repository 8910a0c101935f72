"""make bench, part "fleet": N nginx nodes on loopback on one Redis.

Each node has one worker and the 50 rollouts f1 .. f50 of shape (iii)
(sync interval 1 s, PUBLISH and the subscribed connection for changes);
f50 has "auto" and ramps by time alone when Redis says progressing.

- propagation: 100 percent changes of f1 (HSET and PUBLISH), each timed
  by every node's own clock of publishing it (the status page's
  updated_ms, read after the change is everywhere): per change, the time
  until the last node had it in force; p50, p99, max
- Redis while idle and during the ramp: INFO commandstats and INFO cpu
  before and after a window; per node by dividing by N
- the leader's extra: a MONITOR window (apart from the windows above,
  as MONITOR costs Redis), each command's client port mapped to its node
  by ss(8)

bench.py calls part(B, env, summary) with itself as B.
"""

import os
import random
import re
import socket
import statistics
import subprocess
import time

AUTO = ('        auto     steps=1,2,5,10,20,30,40,50,60,70,80,90,100 '
        'interval=1s\n                 min_requests=0;\n')


def info(B, env, section):
    d = {}
    for line in B.redis(env, 'INFO', section).splitlines():
        if ':' in line:
            k, v = line.split(':', 1)
            d[k] = v.strip()
    return d


def redis_sample(B, env):
    calls = {}
    for k, v in info(B, env, 'commandstats').items():
        m = re.match(r'calls=(\d+)', v)
        if k.startswith('cmdstat_') and m:
            calls[k[8:]] = int(m.group(1))
    cpu = info(B, env, 'cpu')
    return {'t': time.time(), 'calls': calls,
            'cpu': float(cpu['used_cpu_sys']) + float(cpu['used_cpu_user'])}


def redis_window(B, env, seconds):
    a = redis_sample(B, env)
    time.sleep(seconds)
    b = redis_sample(B, env)
    dt = b['t'] - a['t']
    per = {k: (b['calls'][k] - a['calls'].get(k, 0)) / dt
           for k in b['calls'] if b['calls'][k] - a['calls'].get(k, 0)}
    # the bench's own INFO calls
    per.pop('info', None)
    return {'seconds': dt, 'commands_per_s': sum(per.values()),
            'by_command': {k: round(v, 2) for k, v in per.items()},
            'cpu_ms_per_s': (b['cpu'] - a['cpu']) * 1000.0 / dt}


def ports_to_nodes(env, nodes):
    """Redis client port -> node index, from ss(8) and the workers' pids"""
    pid_node = {}
    for i, n in enumerate(nodes):
        with open('/proc/%d/task/%d/children' % (n['p'].pid,
                                                 n['p'].pid)) as f:
            for pid in f.read().split():
                pid_node[int(pid)] = i
    r = subprocess.run(['ss', '-tnpH', 'dst', '127.0.0.1:%d'
                        % env.redis_port], capture_output=True, text=True)
    out = {}
    for line in r.stdout.splitlines():
        f = line.split()
        m = re.search(r'pid=(\d+)', line)
        if len(f) >= 4 and m and int(m.group(1)) in pid_node:
            out[int(f[3].rsplit(':', 1)[1])] = pid_node[int(m.group(1))]
    return out


def monitor(B, env, nodes, seconds):
    """Commands per second per node over a MONITOR window"""
    where = ports_to_nodes(env, nodes)
    sock = socket.create_connection(('127.0.0.1', env.redis_port))
    sock.sendall(b'MONITOR\r\n')
    sock.settimeout(0.2)
    chunks, end = [], time.time() + seconds
    while time.time() < end:
        try:
            chunks.append(sock.recv(1 << 20))
        except socket.timeout:
            pass
    sock.close()
    per = [{} for _ in nodes]
    for line in b''.join(chunks).decode(errors='replace').splitlines():
        m = re.match(r'^\+[\d.]+ \[\d+ 127\.0\.0\.1:(\d+)\] "(\w+)"', line)
        if m and int(m.group(1)) in where:
            d = per[where[int(m.group(1))]]
            c = m.group(2).lower()
            d[c] = d.get(c, 0) + 1.0 / seconds
    return per


def status(B, port):
    st = B.status_json(port)
    return {r['name']: r for r in st['rollouts']} if st else {}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def propagation(B, env, nodes, n):
    rnd = random.Random(7)
    rd = B.Resp(env.redis_port)
    worst, each = [], []
    value = 50
    for i in range(n):
        value = 10 if value != 10 else 20
        time.sleep(rnd.uniform(0.05, 0.15))
        t0 = time.time()
        rd.send(('HSET', 'canary:rollout:f1', 'percent', str(value)),
                ('PUBLISH', 'canary:changed', 'f1'))
        rd.drain()
        # read when every node has it; the time is the node's own
        time.sleep(0.05)
        times = []
        for node in nodes:
            end = time.time() + 10
            while True:
                r = status(B, node['port']).get('f1', {})
                if r.get('percent') == value:
                    times.append(r['updated_ms'] - t0 * 1000.0)
                    break
                if time.time() > end:
                    raise RuntimeError('fleet: change %d not applied on '
                                       'port %d' % (i, node['port']))
                time.sleep(0.01)
        worst.append(max(times))
        each.extend(times)
    rd.close()
    return {'changes': n,
            'all_nodes_ms': {'p50': pct(worst, 0.5), 'p99': pct(worst, 0.99),
                             'max': max(worst)},
            'each_node_ms': {'p50': pct(each, 0.5), 'p99': pct(each, 0.99),
                             'max': max(each)}}


def start_nodes(B, env, count):
    subst = B.flags_subst()
    subst['ROLLOUTS'] = subst['ROLLOUTS'].replace(
        '        percent  50;\n    }\n', '        percent  50;\n' + AUTO
        + '    }\n', B.NFLAGS).replace(AUTO, '', B.NFLAGS - 1)
    nodes = []
    for i in range(count):
        port = B.free_port()
        name = 'front-fleet-%d' % i
        prefix = os.path.join(B.RUN, name)
        extra = dict(subst, NODE='node%d' % i)
        prefix, conf = B.write_conf(name, B.render(
            os.path.join(B.HERE, 'conf', 'fleet.conf'), env, prefix, port,
            False, extra))
        p = B.spawn([B.NGINX, '-p', prefix, '-c', conf, '-e',
                     os.path.join(prefix, 'error.log')])
        nodes.append({'p': p, 'port': port, 'prefix': prefix})
    for node in nodes:
        B.wait_ready(node['port'], node['p'], 60, '/canary')
    return nodes


def part(B, env, summary):
    count = 4 if B.QUICK else 16
    window = 3 if B.QUICK else 10
    changes = 20 if B.QUICK else 100
    out = {'nodes': count, 'window_s': window}

    for i in range(1, B.NFLAGS + 1):
        B.redis(env, 'DEL', 'canary:rollout:f%d' % i)
        B.redis(env, 'HSET', 'canary:rollout:f%d' % i, 'percent', '50')
    B.redis(env, 'CONFIG', 'SET', 'notify-keyspace-events', '')

    nodes = start_nodes(B, env, count)
    time.sleep(3)

    out['idle'] = redis_window(B, env, window)
    out['idle_monitor'] = monitor(B, env, nodes, window / 2.0)
    B.log('fleet: %d nodes idle: %.0f Redis commands/s, Redis CPU %.1f '
          'ms/s' % (count, out['idle']['commands_per_s'],
                    out['idle']['cpu_ms_per_s']))

    out['propagation'] = propagation(B, env, nodes, changes)
    B.log('fleet: a change in force on all %d nodes: p50 %.1f ms, p99 '
          '%.1f ms, max %.1f ms' % ((count,) + tuple(
              out['propagation']['all_nodes_ms'][k]
              for k in ('p50', 'p99', 'max'))))

    # the ramp: 13 steps of 1 s
    B.redis(env, 'HSET', 'canary:rollout:f50', 'state', 'progressing')
    B.redis(env, 'PUBLISH', 'canary:changed', 'f50')
    time.sleep(1.5)
    out['ramp'] = redis_window(B, env, window)
    out['ramp_monitor'] = monitor(B, env, nodes, window / 2.0)
    leaders = [i for i, n in enumerate(nodes)
               if (status(B, n['port']).get('f50', {}).get('auto') or {})
               .get('leader')]
    out['leader'] = leaders[0] if leaders else None
    B.log('fleet: %d nodes during a ramp: %.0f Redis commands/s, Redis '
          'CPU %.1f ms/s, leader %s'
          % (count, out['ramp']['commands_per_s'],
             out['ramp']['cpu_ms_per_s'], out['leader']))
    B.redis(env, 'HSET', 'canary:rollout:f50', 'state', 'paused')

    for node in nodes:
        B.stop(node['p'])

    summary['fleet'] = out
    out['table'] = table(out)


def table(out):
    n = out['nodes']

    def node_rates(mon):
        return [sum(d.values()) for d in mon]

    idle = node_rates(out['idle_monitor'])
    ramp = node_rates(out['ramp_monitor'])
    lead = out['leader']
    others = [r for i, r in enumerate(ramp) if i != lead] or [0]
    rows = ['fleet (%d nodes, 1 worker each, 50 rollouts, sync 1 s, one '
            'Redis on the same 2 cores; windows of %d s):'
            % (n, out['window_s'])]
    a, e = out['propagation']['all_nodes_ms'], \
        out['propagation']['each_node_ms']
    rows.append('  a percent change in force, by each node\'s clock, over '
                '%d changes: on all nodes p50 %.1f ms, p99 %.1f ms, max '
                '%.1f ms; on one node p50 %.1f, p99 %.1f, max %.1f'
                % (out['propagation']['changes'], a['p50'], a['p99'],
                   a['max'], e['p50'], e['p99'], e['max']))
    for w in ('idle', 'ramp'):
        r = out[w]
        rows.append('  %-5s Redis: %.0f commands/s (%.1f per node), CPU '
                    '%.1f ms/s (%.2f per node); by command: %s'
                    % (w, r['commands_per_s'], r['commands_per_s'] / n,
                       r['cpu_ms_per_s'], r['cpu_ms_per_s'] / n,
                       ', '.join('%s %.1f' % kv for kv in sorted(
                           r['by_command'].items(), key=lambda kv: -kv[1]))))
    rows.append('  MONITOR, commands/s per node: idle median %.1f (min %.1f, '
                'max %.1f); ramp: leader (node%s) %.1f, others median %.1f'
                % (statistics.median(idle), min(idle), max(idle), lead,
                   ramp[lead] if lead is not None else 0,
                   statistics.median(others)))
    if lead is not None:
        mon = out['ramp_monitor']
        extra = {c: mon[lead][c] - statistics.median(
                     [d.get(c, 0) for i, d in enumerate(mon) if i != lead]
                     or [0]) for c in mon[lead]}
        out['leader_extra'] = extra
        rows.append('  the leader\'s extra during the ramp (its rate minus '
                    'the others\' median), by command: ' + ', '.join(
                        '%s %+.1f' % kv for kv in sorted(
                            extra.items(), key=lambda kv: -kv[1])))
    return '\n'.join(rows)
