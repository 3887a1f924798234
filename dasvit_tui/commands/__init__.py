"""The `dasvit` commands: one module per command group, each command a plain module-level function.

Typer reads a command's options, help and defaults from the function's signature and docstring; nothing
here knows about the app. `dasvit_tui.cli` registers the functions on it, in the order `dasvit --help`
lists them (`cli.COMMANDS`). A command is then callable, importable and testable on its own.

    search      `dasvit search`, `dasvit approve`      (and the headless search's last lines)
    retrain     `dasvit retrain`
    show        `dasvit show`                          (`budget_line`: a cell against its search's budget)
    derive      `dasvit derive`
    tui         `dasvit tui`                           (`start_and_monitor`: search/retrain with the monitor)
    bench       `dasvit bench`
    plot        `dasvit plot`
    compare     `dasvit compare`                       (`compare_table`, also drawn by `dasvit show`)
    focus       `dasvit focus`
    specialize  `dasvit specialize`
    export      `dasvit export`
    tensorboard `dasvit tensorboard`

Each module imports the engine lazily, inside the command, so that `dasvit --help` and the Textual app's
children stay quick and a torch-free command never loads torch.
"""
