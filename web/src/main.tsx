/** The dashboard's routes: every screen has its own URL; pages load on first visit. */
import { lazy, StrictMode, Suspense, type ReactNode } from 'react';
import { createRoot } from 'react-dom/client';
import { createBrowserRouter, Navigate, RouterProvider, useLocation } from 'react-router-dom';
import { SessionProvider, useSession } from './session.js';
import { Layout, RouteError } from './ui.js';
import { SignIn } from './pages/SignIn.js';
import './styles.css';

const Home = lazy(() => import('./pages/Home.js'));
const Keys = lazy(() => import('./pages/Keys.js'));
const Namespace = lazy(() => import('./pages/Namespace.js'));
const Repository = lazy(() => import('./pages/Repository.js'));
const Pipeline = lazy(() => import('./pages/Pipeline.js'));
const Run = lazy(() => import('./pages/Run.js'));
const FunctionPage = lazy(() => import('./pages/Function.js'));
const Build = lazy(() => import('./pages/Build.js'));

/** Screens behind sign-in send the visitor to the form, then back. */
function Guarded({ children }: { children: ReactNode }) {
  const { session } = useSession();
  const location = useLocation();
  if (!session) return <Navigate to={`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`} replace />;
  return <Suspense fallback={<p className="muted">Loading…</p>}>{children}</Suspense>;
}

const router = createBrowserRouter([
  { path: '/sign-in', element: <SignIn /> },
  {
    element: <Layout />,
    errorElement: <RouteError />,
    children: [
      { path: '/', element: <Guarded><Home /></Guarded> },
      { path: '/keys', element: <Guarded><Keys /></Guarded> },
      { path: '/ns/:ns', element: <Guarded><Namespace /></Guarded> },
      { path: '/ns/:ns/:tab', element: <Guarded><Namespace /></Guarded> },
      { path: '/ns/:ns/repo/*', element: <Guarded><Repository /></Guarded> },
      { path: '/ns/:ns/pipelines/:name', element: <Guarded><Pipeline /></Guarded> },
      { path: '/ns/:ns/pipelines/:name/runs/:number', element: <Guarded><Run /></Guarded> },
      { path: '/ns/:ns/functions/:name', element: <Guarded><FunctionPage /></Guarded> },
      { path: '/ns/:ns/builds/:id', element: <Guarded><Build /></Guarded> },
      { path: '*', element: <p>No such page. <a href="/">Home</a></p> },
    ],
  },
]);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <SessionProvider>
      <RouterProvider router={router} />
    </SessionProvider>
  </StrictMode>,
);
