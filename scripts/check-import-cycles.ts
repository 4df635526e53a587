/**
 * Fails when the project's own modules import each other in a cycle (an architecture rule: cycles make
 * layers meaningless and start-up order fragile). Resolves imports with the TypeScript compiler itself.
 */
import ts from 'typescript';
import { relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const configPath = ts.findConfigFile(root, (file) => ts.sys.fileExists(file), 'tsconfig.json');
if (configPath === undefined) throw new Error('no tsconfig.json');
const config: unknown = ts.readConfigFile(configPath, (file) => ts.sys.readFile(file)).config;
const parsed = ts.parseJsonConfigFileContent(config, ts.sys, root);
const files = parsed.fileNames.filter((file) => !file.includes('/node_modules/'));
const host = ts.createCompilerHost(parsed.options);

const graph = new Map<string, string[]>();
for (const file of files) {
  const source = ts.createSourceFile(file, ts.sys.readFile(file) ?? '', ts.ScriptTarget.Latest);
  const edges: string[] = [];
  for (const statement of source.statements) {
    // Type-only imports and exports are erased at run time and cannot form a load cycle.
    if (
      ts.isImportDeclaration(statement) &&
      statement.importClause?.phaseModifier !== ts.SyntaxKind.TypeKeyword
    ) {
      edges.push((statement.moduleSpecifier as ts.StringLiteral).text);
    } else if (
      ts.isExportDeclaration(statement) &&
      !statement.isTypeOnly &&
      statement.moduleSpecifier !== undefined
    ) {
      edges.push((statement.moduleSpecifier as ts.StringLiteral).text);
    }
  }
  graph.set(
    file,
    edges
      .map(
        (specifier) =>
          ts.resolveModuleName(specifier, file, parsed.options, host).resolvedModule?.resolvedFileName,
      )
      .filter((target): target is string => target !== undefined && !target.includes('/node_modules/')),
  );
}

const state = new Map<string, 'visiting' | 'done'>();
const cycles: string[][] = [];
function visit(file: string, path: string[]): void {
  const mark = state.get(file);
  if (mark === 'done') return;
  if (mark === 'visiting') {
    cycles.push([...path.slice(path.indexOf(file)), file]);
    return;
  }
  state.set(file, 'visiting');
  for (const next of graph.get(file) ?? []) visit(next, [...path, file]);
  state.set(file, 'done');
}
for (const file of graph.keys()) visit(file, []);

if (cycles.length > 0) {
  for (const cycle of cycles)
    console.error(`import cycle: ${cycle.map((f) => relative(root, f)).join(' → ')}`);
  process.exit(1);
}
console.log(`no import cycles among ${graph.size} modules`);
