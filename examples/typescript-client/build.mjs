// src/flows.ts -> dist/flows.js without a second type check (`npm run typecheck` is that):
// TypeScript's own transpiler, types erased, nothing else changed.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import ts from "typescript";

const { outputText } = ts.transpileModule(readFileSync("src/flows.ts", "utf8"), {
  compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
});
mkdirSync("dist", { recursive: true });
writeFileSync("dist/flows.js", outputText);
