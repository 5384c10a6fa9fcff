;; startloopcmd.wat: a WASI command whose _start never returns.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever)))
  (func (export "yomo_observe_datatags") (call $observe (i32.const 1)))
  (func (export "yomo_handler")))
