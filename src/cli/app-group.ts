// Whether the app's process group still has a running process: the app, or what it started and left there.
import { readdirSync, readFileSync } from 'node:fs';

/** `/proc/PID/stat`: pid, (comm, which may hold spaces and parentheses), state, ppid, pgrp. */
const STAT = /^\d+ \(.*\) (\S) \d+ (\d+) /s;

/**
 * Whether a process of group `pgid` runs (a zombie does not). `kill(-pgid, 0)` answers first; a
 * group it finds is confirmed on Linux by `/proc`, since a zombie — an orphan meshlet adopted as
 * PID 1 and Node never reaps — still counts as a member there.
 */
export function groupRunning(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    // EPERM: a member runs under another user (it changed its uid); it is there.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true; // no /proc: kill's answer stands
  }
  let sawAny = false;
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    sawAny = true;
    const m = STAT.exec(stat);
    if (m !== null && Number(m[2]) === pgid && m[1] !== 'Z') return true;
  }
  return !sawAny; // /proc unreadable: kill's answer stands
}
