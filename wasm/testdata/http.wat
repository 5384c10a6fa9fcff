;; http.wat: a guest of yomo_http_send. The frame's payload is the JSON
;; request; the handler sends it, writes the status with tag 1 (4 bytes,
;; little endian) and, on success, the response JSON with tag 2. Tag 3
;; gives the host response addresses outside the memory.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "env" "yomo_context_tag" (func $tag (result i32)))
  (import "env" "yomo_context_data_size" (func $size (result i32)))
  (import "env" "yomo_context_data" (func $data (param i32 i32) (result i32)))
  (import "env" "yomo_write" (func $write (param i32 i32 i32) (result i32)))
  (import "env" "yomo_http_send" (func $send (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; yomo_alloc: a bump allocator from 64 KiB, growing the memory.
  (global $heap (mut i32) (i32.const 65536))
  (func (export "yomo_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq (memory.grow
              (i32.sub (i32.div_u (i32.add (global.get $heap) (i32.const 65535)) (i32.const 65536))
                       (memory.size)))
              (i32.const -1))
          (then unreachable))))
    (local.get $p))
  (func (export "yomo_observe_datatags")
    (call $observe (i32.const 1))
    (call $observe (i32.const 3)))
  (func (export "yomo_handler")
    (local $n i32)
    (local $addr i32)
    (global.set $heap (i32.const 65536)) ;; one response at a time
    (local.set $n (call $size))
    (if (i32.gt_u (local.get $n) (i32.const 60000)) (then unreachable))
    (drop (call $data (i32.const 1024) (local.get $n)))
    (local.set $addr (if (result i32) (i32.eq (call $tag) (i32.const 3))
      (then (i32.const -8)) (else (i32.const 16))))
    (i32.store (i32.const 8)
      (call $send (i32.const 1024) (local.get $n) (local.get $addr) (i32.add (local.get $addr) (i32.const 4))))
    (drop (call $write (i32.const 1) (i32.const 8) (i32.const 4)))
    (if (i32.eqz (i32.load (i32.const 8)))
      (then (drop (call $write (i32.const 2) (i32.load (i32.const 16)) (i32.load (i32.const 20))))))))
