#!/usr/bin/env node
// Entry point of the `meshlet` command: runs the compiled CLI (built by `npm ci` / `npm run build`).
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2));
