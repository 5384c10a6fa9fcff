;; order.wat: a WASI command (exports _start) that logs, in its memory,
;; which start export ran in which order; its handler writes the log with
;; tag 2. yomo_init appends "I", so a log with two "I" shows an instance
;; initialized twice.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "env" "yomo_get_wanted_target" (func $wanted (param i32 i32)))
  (import "env" "yomo_write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "order-target")
  ;; The log is at 256; its length is at 252.
  (func $log (param $c i32)
    (i32.store8 (i32.add (i32.const 256) (i32.load (i32.const 252))) (local.get $c))
    (i32.store (i32.const 252) (i32.add (i32.load (i32.const 252)) (i32.const 1))))
  (func (export "_start") (call $log (i32.const 83)))                ;; S
  (func (export "yomo_observe_datatags")
    (call $log (i32.const 79))                                        ;; O
    (call $observe (i32.const 1)))
  (func (export "yomo_wanted_target")
    (call $log (i32.const 84))                                        ;; T
    (call $wanted (i32.const 16) (i32.const 12)))
  (func (export "yomo_init") (result i32) (call $log (i32.const 73)) (i32.const 0)) ;; I
  (func (export "yomo_handler")
    (call $log (i32.const 72))                                        ;; H
    (drop (call $write (i32.const 2) (i32.const 256) (i32.load (i32.const 252))))))
