"""The `spbench` commands, a module a family: each registers its parsers with `add_parser(sub)`,
which names the function that runs the command (`args.handler`). Heavy modules (torch, PEFT,
transformers) are imported inside those functions, so parsing and listing stay fast."""
