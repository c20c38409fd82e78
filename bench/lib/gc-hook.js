'use strict';
// Preloaded into every benchmark server (`node --expose-gc -r bench/lib/gc-hook.js …`).
// On SIGUSR2 it runs a full garbage collection and prints one line, so the
// runner can read /proc/<pid>/status right after a GC. It changes nothing else.

process.on('SIGUSR2', () => {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
  }
  process.stdout.write(`bench-gc-done rss=${process.memoryUsage().rss}\n`);
});
