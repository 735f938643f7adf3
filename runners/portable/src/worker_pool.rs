//! The `BeamFnExternalWorkerPool` service behind `beam:env:external:v1`: the Beam engine
//! asks it to start a worker, and it starts an SDK harness in this process.

use std::collections::HashMap;
use std::sync::Mutex;

use beamline_proto::fn_execution as fe;
use fe::beam_fn_external_worker_pool_server::{
    BeamFnExternalWorkerPool, BeamFnExternalWorkerPoolServer,
};
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status};

use crate::grpc::runtime;
use crate::harness::{self, HarnessContext};
use crate::{Error, Result};

/// A running worker pool; [`WorkerPool::shutdown`] (or dropping it) stops the server and
/// every harness it started.
#[derive(Debug)]
pub struct WorkerPool {
    address: String,
    stop_server: Option<oneshot::Sender<()>>,
    stop_workers: watch::Sender<bool>,
}

struct Service {
    context: HarnessContext,
    stop: watch::Receiver<bool>,
    workers: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl WorkerPool {
    /// Serves the pool on `address` (HOST:PORT; port 0 picks a free one).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn serve(address: &str, context: HarnessContext) -> Result<WorkerPool> {
        let rt = runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(address))
            .map_err(|e| {
                Error::Connect(format!("worker pool: cannot listen on '{address}': {e}"))
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Connect(format!("worker pool: {e}")))?;
        let (stop_server, stopped) = oneshot::channel::<()>();
        let (stop_workers, stop) = watch::channel(false);
        let service = Service {
            context,
            stop,
            workers: Mutex::default(),
        };
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(BeamFnExternalWorkerPoolServer::new(service))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        Ok(WorkerPool {
            address: local.to_string(),
            stop_server: Some(stop_server),
            stop_workers,
        })
    }

    /// Where the pool listens (HOST:PORT).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Stops the server and the harnesses it started.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.stop_workers.send(true);
        if let Some(s) = self.stop_server.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tonic::async_trait]
impl BeamFnExternalWorkerPool for Service {
    async fn start_worker(
        &self,
        request: Request<fe::StartWorkerRequest>,
    ) -> Result<Response<fe::StartWorkerResponse>, Status> {
        let r = request.into_inner();
        let Some(control) = r.control_endpoint.filter(|e| !e.url.is_empty()) else {
            return Ok(Response::new(fe::StartWorkerResponse {
                error: "StartWorker without a control endpoint".into(),
            }));
        };
        let (stop_one, stopped) = watch::channel(false);
        self.workers
            .lock()
            .expect("workers")
            .insert(r.worker_id.clone(), stop_one);
        let context = self.context.clone();
        let pool_stop = self.stop.clone();
        let logging = r.logging_endpoint.map(|e| e.url).filter(|u| !u.is_empty());
        tokio::spawn(async move {
            let worker_id = r.worker_id;
            if let Err(e) = harness::run(
                context.clone(),
                worker_id.clone(),
                control.url,
                logging,
                pool_stop,
                stopped,
            )
            .await
            {
                context.record_error(beamline_engine::EngineError::Runner(format!(
                    "lost the connection to the Beam engine (SDK worker {worker_id}): {e}"
                )));
            }
        });
        Ok(Response::new(fe::StartWorkerResponse::default()))
    }

    async fn stop_worker(
        &self,
        request: Request<fe::StopWorkerRequest>,
    ) -> Result<Response<fe::StopWorkerResponse>, Status> {
        let id = request.into_inner().worker_id;
        if let Some(stop) = self.workers.lock().expect("workers").remove(&id) {
            let _ = stop.send(true);
        }
        Ok(Response::new(fe::StopWorkerResponse::default()))
    }
}
