# Before anything of hode.edge imports grpc: see hode/edge/grpc_io.py.
from hode.edge.grpc_io import prefer_direct_polling

prefer_direct_polling()
