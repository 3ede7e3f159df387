// Copies the chart library from the npm package into tradesim's static files.
//
//   npm ci && npm run build     (scripts/lib.sh's build_frontend runs exactly this)
//
// The pages load /static/vendor/lightweight-charts.standalone.production.js, which
// defines the global `LightweightCharts`. Nothing is ever loaded from a CDN.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, "node_modules", "lightweight-charts");
const outDir = join(here, "..", "tradesim", "web", "static", "vendor");

if (!existsSync(pkgDir)) {
  console.error("lightweight-charts is not installed: run `npm ci` in frontend/ first");
  process.exit(1);
}
const { version } = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
mkdirSync(outDir, { recursive: true });
const files = [
  ["dist/lightweight-charts.standalone.production.js", "lightweight-charts.standalone.production.js"],
  ["LICENSE", "lightweight-charts.LICENSE.txt"],
  ["NOTICE", "lightweight-charts.NOTICE.txt"],
];
for (const [from, to] of files) {
  const source = join(pkgDir, from);
  if (existsSync(source)) copyFileSync(source, join(outDir, to));
}
writeFileSync(
  join(outDir, "VERSIONS.json"),
  JSON.stringify({ "lightweight-charts": version }, null, 2) + "\n",
);
console.log(`frontend: lightweight-charts ${version} -> ${outDir}`);
