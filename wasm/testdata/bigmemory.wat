;; bigmemory.wat: its memory starts at 4 MiB (64 pages).
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (memory (export "memory") 64)
  (func (export "yomo_observe_datatags") (call $observe (i32.const 1)))
  (func (export "yomo_handler")))
