"""Independent reader of agpt's TensorBoard event files: checks every record's CRC-32C (bitwise,
not table-driven like the C++), decodes the Event protocol buffers by hand and compares the
scalars with metrics.jsonl. Usage: tensorboard_check.py path/to/agpt"""
import json
import os
import struct
import subprocess
import sys
import tempfile


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def fields(buf):
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 2:
            n, i = varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wire)
        yield field, value


def events(path):
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        assert length_crc == masked(header), "length CRC"
        body = data[pos + 12:pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        assert body_crc == masked(body), "data CRC"
        pos += 16 + length
        yield body


def main():
    agpt = sys.argv[1]
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([agpt, "train", "--job.dump_folder", work, "--job.name", "tb",
                        "--model.flavor", "tiny", "--training.steps", "6", "--training.seq_len", "32",
                        "--training.local_batch_size", "2", "--metrics.log_freq", "2",
                        "--validation.freq", "3", "--validation.steps", "1",
                        "--sample.max_new_tokens", "0", "--metrics.enable_tensorboard", "true"],
                       check=True, stdout=subprocess.DEVNULL)
        run = os.path.join(work, "tb")
        tb_files = os.listdir(os.path.join(run, "tb"))
        assert len(tb_files) == 1 and tb_files[0].startswith("events.out.tfevents."), tb_files
        scalars = {}
        version = None
        for body in events(os.path.join(run, "tb", tb_files[0])):
            step = 0
            for field, value in fields(body):
                if field == 3:
                    version = value.decode()
                elif field == 2:
                    step = value
                elif field == 5:
                    for f, v in fields(value):
                        assert f == 1
                        tag = val = None
                        for ff, vv in fields(v):
                            if ff == 1:
                                tag = vv.decode()
                            elif ff == 2:
                                (val,) = struct.unpack("<f", vv)
                        scalars[(step, tag)] = val
        assert version == "brain.Event:2", version
        expected = {}
        for line in open(os.path.join(run, "metrics.jsonl")):
            row = json.loads(line)
            for key, value in row.items():
                if key != "step":
                    expected[(row["step"], key)] = struct.unpack("<f", struct.pack("<f", value))[0]
        assert scalars == expected, (sorted(scalars.items())[:5], sorted(expected.items())[:5])
        print("tensorboard: %d scalars match metrics.jsonl; 1 passed, 0 failed" % len(scalars))


if __name__ == "__main__":
    main()
