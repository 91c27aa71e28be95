// The fractal-dsl extension: highlighting comes from syntaxes/fdsl.tmLanguage.json (a copy of
// editors/fdsl.tmLanguage.json); everything else from the language server `fractal-dsl lsp`,
// started over stdio with the command in the setting `fractalDsl.server.command`.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("fractalDsl").get("server.command", ["fractal-dsl", "lsp"]);
  const server = { command, args, transport: TransportKind.stdio };
  client = new LanguageClient(
    "fractalDsl",
    "fractal-dsl",
    { run: server, debug: server },
    { documentSelector: [{ language: "fdsl" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
