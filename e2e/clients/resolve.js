// resolve.js: the e2e suite's Node.js client. It asks A records through
// Node's dns.Resolver (c-ares, as a Node.js service resolves) and prints a
// report shaped like `lrpdns probe`'s. Usage, flags before names:
//   node resolve.js [--server IP[:PORT]] --duration 60s [--interval 20ms]
//     [--inflight N] [--fresh SUFFIX] [--fresh-external SUFFIX[=WANT]] [--run R]
//     NAME[=WANT]...
// --run R (1-254) is the R in the never-seen names, 10-R-HI-LO and rR-N;
// default random. --fresh-external SUFFIX=spelled asks 10-R-HI-LO.SUFFIX
// and checks the address it spells.
// The report is e2e/judge.Report: failures with the time sent, name, kind
// (timeout, refused, servfail, dns-refused, wrong, error) and detail; the
// queries sent in each second.
// --inflight N runs N lookups side by side. c-ares keeps a UDP socket only
// while a query is outstanding on it, so N > 1 is a busy service whose
// socket stays open across lookups.
'use strict';
const dns = require('node:dns').promises;
const fs = require('node:fs');

// duration reads a Go duration: 20ms, 30s, 1m0s, 1h30m.
function duration(s) {
  const unit = { h: 3600000, m: 60000, s: 1000, ms: 1 };
  let ms = 0, rest = s;
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ms|h|m|s)/.exec(rest);
    if (!m) throw new Error(`bad duration ${JSON.stringify(s)}`);
    ms += Number(m[1]) * unit[m[2]];
    rest = rest.slice(m[0].length);
  }
  if (!s) throw new Error('empty duration');
  return ms;
}

function parse(argv) {
  const o = { server: '', duration: 0, interval: 20, inflight: 1, fresh: '', freshExternal: '', run: 0, targets: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) throw new Error(`${a} needs a value`); return argv[++i]; };
    if (a === '--server') o.server = val();
    else if (a === '--duration') o.duration = duration(val());
    else if (a === '--interval') o.interval = duration(val());
    else if (a === '--inflight') o.inflight = Number(val());
    else if (a === '--fresh') o.fresh = val();
    else if (a === '--fresh-external') o.freshExternal = val();
    else if (a === '--run') o.run = Number(val());
    else if (a.startsWith('-')) throw new Error(`unknown flag ${a}`);
    else { const [name, want = ''] = a.split('='); o.targets.push({ name, want }); }
  }
  if (!o.duration || !(o.inflight >= 1)) throw new Error('give --duration, and --inflight of at least 1');
  if (!Number.isInteger(o.run) || o.run < 0 || o.run > 254) throw new Error(`invalid --run ${o.run}: want 1 to 254, or 0 for a random one`);
  if (!o.server) {
    const m = /^nameserver\s+(\S+)/m.exec(fs.readFileSync('/etc/resolv.conf', 'utf8'));
    if (!m) throw new Error('no --server and no nameserver in /etc/resolv.conf');
    o.server = m[1];
  }
  return o;
}

async function main() {
  const o = parse(process.argv.slice(2));
  const r = new dns.Resolver(); // Node's defaults: a 5 s timeout, 4 tries
  r.setServers([o.server]);
  const run = o.run || 1 + Math.floor(Math.random() * 254);
  // A round: the named targets, then a never-seen name of each kind, as
  // `lrpdns probe` builds them.
  const makers = [];
  if (o.fresh) makers.push((n) => {
    const hi = (Math.floor(n / 254) % 254) + 1, lo = (n % 254) + 1;
    return { name: `10-${run}-${hi}-${lo}.${o.fresh}`, want: `10.${run}.${hi}.${lo}`, fresh: true };
  });
  if (o.freshExternal) {
    const [suffix, want = ''] = o.freshExternal.split('=');
    makers.push((n) => {
      if (want !== 'spelled') return { name: `r${run}-${n}.${suffix}`, want, fresh: true };
      const hi = (Math.floor(n / 254) % 254) + 1, lo = (n % 254) + 1;
      return { name: `10-${run}-${hi}-${lo}.${suffix}`, want: `10.${run}.${hi}.${lo}`, fresh: true };
    });
  }
  const round = o.targets.length + makers.length;
  const rep = { server: o.server, client: `node.js ${process.version} dns.Resolver (c-ares ${process.versions.ares}), ${o.inflight} in flight`,
    sent: 0, answered: 0, failed: 0, wrong: 0, resent: 0, slow: 0, failures: [], answers: {},
    started: new Date().toISOString(), perSecond: [] };
  const start = Date.parse(rep.started);
  const fail = (t, name, kind, detail) => {
    rep.failed++;
    if (kind === 'wrong') rep.wrong++;
    if (rep.failures.length < 50) rep.failures.push({ at: new Date(t).toISOString(), name, kind, detail });
  };
  // c-ares's codes by the judge's kinds.
  const kinds = { ETIMEOUT: 'timeout', ECONNREFUSED: 'refused', ESERVFAIL: 'servfail', EREFUSED: 'dns-refused' };
  const end = start + o.duration;
  let next = 0;
  async function worker() {
    while (Date.now() < end) {
      const i = next++;
      const j = i % round;
      const t = j < o.targets.length ? o.targets[j] : makers[j - o.targets.length](Math.floor(i / round));
      rep.sent++;
      const began = Date.now();
      const sec = Math.floor((began - start) / 1000);
      while (rep.perSecond.length <= sec) rep.perSecond.push(0);
      rep.perSecond[sec]++;
      try {
        const addrs = await r.resolve4(t.name);
        if (Date.now() - began >= 1000) rep.slow++;
        if (t.want && !addrs.includes(t.want)) fail(began, t.name, 'wrong', `answer ${addrs}, want ${t.want}`);
        else { rep.answered++; const k = t.fresh ? 'fresh' : (addrs[0] || 'NOERROR'); rep.answers[k] = (rep.answers[k] || 0) + 1; }
      } catch (e) {
        if (t.want === 'NXDOMAIN' && e.code === 'ENOTFOUND') { rep.answered++; rep.answers.NXDOMAIN = (rep.answers.NXDOMAIN || 0) + 1; }
        else fail(began, t.name, kinds[e.code] || 'error', e.code || e.message);
      }
      await new Promise((res) => setTimeout(res, o.interval));
    }
  }
  await Promise.all(Array.from({ length: o.inflight }, worker));
  process.stdout.write(JSON.stringify(rep) + '\n');
  process.exitCode = rep.failed > 0 ? 1 : 0;
}

main().catch((e) => { process.stderr.write(`resolve.js: ${e.message}\n`); process.exitCode = 2; });
