// Starts `cascadec lsp` (or the command in the `cascade.server.command` setting) for .cascade files.
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("cascade").get("server.command");
  const server = { command, args, transport: TransportKind.stdio };
  client = new LanguageClient("cascade", "Cascade language server", server, {
    documentSelector: [{ scheme: "file", language: "cascade" }],
  });
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
