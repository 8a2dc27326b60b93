// Preloaded (node -r) into the firebase-tools process by start-emulator.js.
// If the launcher disappears without stopping us (e.g. it was SIGKILLed), our
// parent pid changes; then ask ourselves for firebase-tools' clean shutdown
// (SIGTERM), and exit for sure a few seconds later.
'use strict';

const initialParent = process.ppid;
const timer = setInterval(() => {
  if (process.ppid === initialParent) return;
  clearInterval(timer);
  process.stderr.write('parent-guard: launcher is gone, stopping the emulator\n');
  const ownDir = process.env.MOAT_EMULATOR_OWN_DIR;
  if (ownDir) {
    // The launcher created this temp dir and can no longer remove it.
    process.on('exit', () => {
      try { require('fs').rmSync(ownDir, { recursive: true, force: true }); } catch (_) { /* ignore */ }
    });
  }
  try { process.kill(process.pid, 'SIGTERM'); } catch (_) { /* ignore */ }
  setTimeout(() => process.exit(1), 5000).unref();
}, 500);
timer.unref();
