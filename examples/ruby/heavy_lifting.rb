# The lesson's socket pair: the parent gives instructions, the child
# worker reports each back "accomplished!". One side Ruby, the other Rust
# (examples/ruby_lesson.rs); the child's channel is PROCWIRE_FD.
#
#   ruby examples/ruby/heavy_lifting.rb parent target/debug/examples/ruby_lesson

require_relative "../../peers/ruby/procwire"

case ARGV[0]
when "parent"
  pid, ch = Procwire::Channel.spawn([ARGV[1], "heavy_lifting", "child"], codec: "msgpack")
  2.times { ch.send_msg("Heavy lifting") }
  2.times { ch.send_msg("Feather lifting") }
  got = Array.new(4) { ch.recv }
  got.each { |g| puts g }
  ch.close # the child's loop ends: it exits
  _, status = Process.wait2(pid)
  ok = got == ["Heavy lifting accomplished!"] * 2 + ["Feather lifting accomplished!"] * 2
  exit(status.success? && ok ? 0 : 1)
when "child"
  ch = Procwire::Channel.from_env
  ch.each { |instruction| ch.send_msg("#{instruction} accomplished!") }
else
  abort "usage: heavy_lifting.rb parent RUST_BIN | child"
end
