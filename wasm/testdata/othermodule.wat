;; othermodule.wat: imports from a module the host does not provide.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "net" "connect" (func $connect (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "yomo_observe_datatags") (call $observe (i32.const 1)))
  (func (export "yomo_handler")))
